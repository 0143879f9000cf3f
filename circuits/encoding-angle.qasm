// qepi encoding 'angle': 4 qubits
OPENQASM 3.0;
include "stdgates.inc";
input float[64] x_0;
input float[64] x_1;
input float[64] x_2;
input float[64] x_3;
qubit[4] q;
ry(x_0) q[0];
ry(x_1) q[1];
ry(x_2) q[2];
ry(x_3) q[3];
