// The prelude of every OpenCL C kernel: tilegemm prepends it to each file in kernels_cl/ and to each
// generated member of the family (src/kernel/family.rs), so the signature and the guarded loads and
// stores are written once. Each kernel is `gemm(GEMM_ARGS)`: the seed's signature plus leading
// dimensions and batch strides, row-major, built with -D TRANS_A=0|1 -D TRANS_B=0|1 (and BATCHED and
// WHOLE_TILES, below): A is stored m×k, or k×m when TRANS_A; B k×n, or n×k when TRANS_B. Every global
// access goes through these helpers and is guarded by the matrix bounds (any M, N, K), unless the
// problem is whole tiles of the kernel (WHOLE_TILES).

#ifndef TRANS_A
#define TRANS_A 0
#endif
#ifndef TRANS_B
#define TRANS_B 0
#endif
// Whether work-group layers are products of a strided batch (or split-K's slices); a single GEMM is
// built with -D BATCHED=0 and keeps A, B and C where they are.
#ifndef BATCHED
#define BATCHED 1
#endif
// Whether the problem is whole tiles of this kernel, 16-byte aligned (M, N, K multiples of its tile,
// rows and batch strides of A and B multiples of 4 floats): every quad a tile loads is then inside
// its operand on a 16-byte boundary and every store inside C, so the guards fold away.
#ifndef WHOLE_TILES
#define WHOLE_TILES 0
#endif

// The arguments of every kernel: the seed's (M, N, K, alpha, A, B, beta, C), leading dimensions, and
// a strided batch — elements from one product's matrices to the next (0 for A or B: one matrix for
// all) and the product of work-group layer 0 (a batch over the device's grid runs in several launches).
#define GEMM_ARGS                                                                              \
    const uint M, const uint N, const uint K, const float alpha,                               \
        __global const float* restrict A, __global const float* restrict B, const float beta, \
        __global float* restrict C, const uint lda, const uint ldb, const uint ldc,           \
        const uint stride_a, const uint stride_b, const uint stride_c, const uint first_batch

// The first statement of every kernel: A, B and C move to this work-group layer's product.
#define ENTER_BATCH()                                                 \
    do {                                                              \
        if (BATCHED) {                                                \
            const size_t product = first_batch + get_group_id(2);    \
            A += product * stride_a;                                  \
            B += product * stride_b;                                  \
            C += product * stride_c;                                  \
        }                                                             \
    } while (0)

// Element (row, col) of a stored rows×cols matrix with row stride ld, or 0 outside it.
inline float elem(__global const float* X, uint row, uint col, uint rows, uint cols, uint ld) {
    return row < rows && col < cols ? X[(size_t)row * ld + col] : 0.0f;
}

// Elements (row, col..col+4) of the same, 0 outside it. A quad wholly inside is one 16-byte load
// where its address is 16-byte aligned, else vload4 (which needs no alignment, and so compiles to
// four loads); an edge quad element by element.
inline float4 quad(__global const float* X, uint row, uint col, uint rows, uint cols, uint ld) {
    if (WHOLE_TILES) {
        return *(__global const float4*)(X + (size_t)row * ld + col);
    }
    if (row < rows && col + 3 < cols) {
        __global const float* at = X + (size_t)row * ld + col;
        return ((size_t)at & 15) == 0 ? *(__global const float4*)at : vload4(0, at);
    }
    return (float4)(elem(X, row, col, rows, cols, ld), elem(X, row, col + 1, rows, cols, ld),
                    elem(X, row, col + 2, rows, cols, ld), elem(X, row, col + 3, rows, cols, ld));
}

// The quads of A and B as stored, by the kernel's argument names (as WGSL kernels read `params`):
// what the generated family loads through.
#define quad_a(row, col) quad(A, row, col, TRANS_A ? K : M, TRANS_A ? M : K, lda)
#define quad_b(row, col) quad(B, row, col, TRANS_B ? N : K, TRANS_B ? K : N, ldb)

// C[row, col] = alpha * acc + beta * C[row, col] where (row, col) lies inside C (M×N, row stride
// ldc). beta == 0 never reads C: it may hold NaN.
inline void store(__global float* C, uint row, uint col, float acc, uint M, uint N, uint ldc,
                  float alpha, float beta) {
    if (WHOLE_TILES || (row < M && col < N)) {
        const size_t index = (size_t)row * ldc + col;
        C[index] = beta == 0.0f ? alpha * acc : alpha * acc + beta * C[index];
    }
}

// store of C[row, col..col+4], by the kernel's argument names: what the generated family stores
// through.
#define store4(row, col, acc)                                                  \
    do {                                                                     \
        const float4 quad_acc = (acc);                                       \
        store(C, row, col, quad_acc.x, M, N, ldc, alpha, beta);              \
        store(C, row, (col) + 1, quad_acc.y, M, N, ldc, alpha, beta);        \
        store(C, row, (col) + 2, quad_acc.z, M, N, ldc, alpha, beta);        \
        store(C, row, (col) + 3, quad_acc.w, M, N, ldc, alpha, beta);        \
    } while (0)
