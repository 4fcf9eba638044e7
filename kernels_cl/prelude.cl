// The prelude of every OpenCL C kernel: tilegemm prepends it to each file in kernels_cl/, so the
// guarded loads and stores are written once. Each kernel keeps the seed's signature plus leading
// dimensions, gemm(M, N, K, alpha, A, B, beta, C, lda, ldb, ldc), row-major, and is built with
// -D TRANS_A=0|1 -D TRANS_B=0|1: A is stored m×k, or k×m when TRANS_A; B k×n, or n×k when TRANS_B.
// Every global access goes through these helpers and is guarded by the matrix bounds: any M, N, K.

#ifndef TRANS_A
#define TRANS_A 0
#endif
#ifndef TRANS_B
#define TRANS_B 0
#endif

// Element (row, col) of a stored rows×cols matrix with row stride ld, or 0 outside it.
inline float elem(__global const float* X, uint row, uint col, uint rows, uint cols, uint ld) {
    return row < rows && col < cols ? X[(size_t)row * ld + col] : 0.0f;
}

// Elements (row, col..col+4) of the same, 0 outside it. A quad wholly inside is read with vload4
// (which, unlike WGSL's vec4 arrays, needs no 16-byte alignment); an edge quad element by element.
inline float4 quad(__global const float* X, uint row, uint col, uint rows, uint cols, uint ld) {
    if (row < rows && col + 3 < cols) return vload4(0, X + (size_t)row * ld + col);
    return (float4)(elem(X, row, col, rows, cols, ld), elem(X, row, col + 1, rows, cols, ld),
                    elem(X, row, col + 2, rows, cols, ld), elem(X, row, col + 3, rows, cols, ld));
}

// C[row, col] = alpha * acc + beta * C[row, col] where (row, col) lies inside C (M×N, row stride
// ldc). beta == 0 never reads C: it may hold NaN.
inline void store(__global float* C, uint row, uint col, float acc, uint M, uint N, uint ldc,
                  float alpha, float beta) {
    if (row < M && col < N) {
        const size_t index = (size_t)row * ldc + col;
        C[index] = beta == 0.0f ? alpha * acc : alpha * acc + beta * C[index];
    }
}

