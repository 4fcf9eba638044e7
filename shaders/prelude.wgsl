// The prelude of every WGSL kernel: tilegemm prepends it to each file in shaders/ and to each
// generated member of the family (src/kernel/family.rs), so the binding layout and the guarded loads
// and stores are written once. `struct Params` is mirrored field for field by `kernel::Params`.
//
// Every global access goes through the helpers below and is guarded by the matrix bounds, so
// tilegemm creates the modules without wgpu's runtime bounds checks; the odd-shape tests are the
// proof that the guards are right; a problem of whole tiles runs without them (`WHOLE_TILES`).
// Coordinates are those of an operand as stored (row-major, row stride ld): A is m×k, or k×m when
// TRANS_A; B is k×n, or n×k when TRANS_B.
//
// A strided batch runs one product per workgroup layer: `main` calls `enter_batch(group.z)` first,
// and every helper then addresses that product's matrices.

// The problem: sizes, leading dimensions, scalars; a strided batch's strides (elements from one
// product's matrix to the next, 0 for A or B: one matrix for all) and the product of workgroup
// layer 0 (a batch deeper than the dispatch limit runs in several launches).
struct Params {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    alpha: f32,
    beta: f32,
    stride_a: u32,
    stride_b: u32,
    stride_c: u32,
    first_batch: u32,
}

// Whether A (B) is stored transposed, and whether workgroup layers are products of a strided batch
// (or split-K's slices). Set per pipeline, so these branches fold away at compile time: a single
// GEMM's pipeline has no per-product offsets, which cost the best kernel 9–14% on an H100.
override TRANS_A: bool = false;
override TRANS_B: bool = false;
override BATCHED: bool = true;
// Whether the problem is whole tiles of this kernel, 16-byte aligned: M, N and K multiples of its
// tile, rows and batch strides of A and B multiples of 4 floats (`KernelSpec::whole_tiles`). Then
// every quad a tile loads lies inside its operand on a 16-byte boundary and every store inside C,
// so the guards below fold away.
override WHOLE_TILES: bool = false;

// A and B are bound as arrays of vec4 (tilegemm pads every buffer to 16 bytes), so whole quads load
// at once; single elements are components of those vec4s.
@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

// Where this workgroup's product starts in A, B and C. Set once by `enter_batch`.
var<private> base_a: u32;
var<private> base_b: u32;
var<private> base_c: u32;

/// Makes the helpers below address product `params.first_batch + layer` of the batch (a single
/// GEMM's pipeline keeps the offsets at 0).
fn enter_batch(layer: u32) {
    if (BATCHED) {
        let index = params.first_batch + layer;
        base_a = index * params.stride_a;
        base_b = index * params.stride_b;
        base_c = index * params.stride_c;
    }
}

// Whether every row of A (B) starts on a 16-byte boundary in every product: the quad loads' fast
// path. From the uniform alone, so the compiler can see the branch is the same for every thread.
fn aligned_a() -> bool {
    return (params.stride_a | params.lda) % 4u == 0u;
}

fn aligned_b() -> bool {
    return (params.stride_b | params.ldb) % 4u == 0u;
}

/// Rows and columns of A as stored.
fn stored_a() -> vec2<u32> {
    return select(vec2<u32>(params.m, params.k), vec2<u32>(params.k, params.m), TRANS_A);
}

/// Rows and columns of B as stored.
fn stored_b() -> vec2<u32> {
    return select(vec2<u32>(params.k, params.n), vec2<u32>(params.n, params.k), TRANS_B);
}

/// Element (row, col) of A as stored, or 0 outside it.
fn elem_a(row: u32, col: u32) -> f32 {
    let size = stored_a();
    if (row >= size.x || col >= size.y) {
        return 0.0;
    }
    let i = base_a + row * params.lda + col;
    return a[i / 4u][i % 4u];
}

/// Element (row, col) of B as stored, or 0 outside it.
fn elem_b(row: u32, col: u32) -> f32 {
    let size = stored_b();
    if (row >= size.x || col >= size.y) {
        return 0.0;
    }
    let i = base_b + row * params.ldb + col;
    return b[i / 4u][i % 4u];
}

/// Elements (row, col..col+4) of A as stored, 0 outside it; col % 4 == 0. One 16-byte load when
/// the quad lies wholly inside and rows are 16-byte aligned (`aligned_a()`), else element by
/// element, each guarded (a loop, not four inlined loads: the edge path stays small, which the
/// register-blocked kernels' loops are measured to need).
fn quad_a(row: u32, col: u32) -> vec4<f32> {
    if (WHOLE_TILES) {
        return a[(base_a + row * params.lda + col) / 4u];
    }
    let size = stored_a();
    if (row >= size.x) {
        return vec4<f32>(0.0);
    }
    let base = base_a + row * params.lda + col;
    if (aligned_a() && col + 3u < size.y) {
        return a[base / 4u];
    }
    var q = vec4<f32>(0.0);
    for (var e = 0u; e < 4u; e++) {
        if (col + e < size.y) {
            let i = base + e;
            q[e] = a[i / 4u][i % 4u];
        }
    }
    return q;
}

/// As `quad_a`, for B.
fn quad_b(row: u32, col: u32) -> vec4<f32> {
    if (WHOLE_TILES) {
        return b[(base_b + row * params.ldb + col) / 4u];
    }
    let size = stored_b();
    if (row >= size.x) {
        return vec4<f32>(0.0);
    }
    let base = base_b + row * params.ldb + col;
    if (aligned_b() && col + 3u < size.y) {
        return b[base / 4u];
    }
    var q = vec4<f32>(0.0);
    for (var e = 0u; e < 4u; e++) {
        if (col + e < size.y) {
            let i = base + e;
            q[e] = b[i / 4u][i % 4u];
        }
    }
    return q;
}

/// C[row, col] ← α·acc + β·C[row, col] where (row, col) lies inside C. β = 0 never reads C: it may
/// hold NaN.
fn store(row: u32, col: u32, acc: f32) {
    if (WHOLE_TILES || (row < params.m && col < params.n)) {
        let index = base_c + row * params.ldc + col;
        if (params.beta == 0.0) {
            c[index] = params.alpha * acc;
        } else {
            c[index] = params.alpha * acc + params.beta * c[index];
        }
    }
}

/// `store` of C[row, col..col+4]: the row is checked once, each column on its own.
fn store4(row: u32, col: u32, acc: vec4<f32>) {
    if (!WHOLE_TILES && row >= params.m) {
        return;
    }
    for (var e = 0u; e < 4u; e++) {
        store(row, col + e, acc[e]);
    }
}

