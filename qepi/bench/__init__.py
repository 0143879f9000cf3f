"""Side-by-side benchmarks behind `qepi bench` (figures for the README)."""
