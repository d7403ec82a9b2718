// Must NOT compile: a CUDA kernel header in a file the host compiler builds. CTest expects the
// #error's message in the compiler output.
#include <mlnc/cuda/pal.cuh>

int main() { return 0; }
