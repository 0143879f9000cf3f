// qepi encoding 'iqp': 4 qubits
OPENQASM 3.0;
include "stdgates.inc";
input float[64] x_0;
input float[64] x_1;
input float[64] x_2;
input float[64] x_3;
gate rzz(p0) _gate_q_0, _gate_q_1 {
  cx _gate_q_0, _gate_q_1;
  rz(p0) _gate_q_1;
  cx _gate_q_0, _gate_q_1;
}
qubit[4] q;
h q[0];
h q[1];
h q[2];
h q[3];
rz(x_0) q[0];
rz(x_1) q[1];
rz(x_2) q[2];
rz(x_3) q[3];
rzz(x_0*x_1) q[0], q[1];
rzz(x_1*x_2) q[1], q[2];
rzz(x_2*x_3) q[2], q[3];
