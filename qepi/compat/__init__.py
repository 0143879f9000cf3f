"""The only places where qepi uses private or experimental third-party APIs: one module per
library (``aer``, ``pennylane``, ``torch``), each checking the library version it was written
against."""
