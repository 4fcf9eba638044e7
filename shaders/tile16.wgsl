// tile16: the seed's baseline. A 16×16 workgroup computes one 16×16 tile of C, one output per thread,
// stepping through K in slabs of 16 staged in workgroup memory.
//
// Every global access is guarded by the matrix bounds, so tilegemm creates this module without wgpu's
// runtime bounds checks; the odd-shape tests are the proof that the guards are right.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    alpha: f32,
    beta: f32,
}

// Whether A (B) is stored transposed. Set per pipeline, so these branches fold away at compile time.
override TRANS_A: bool = false;
override TRANS_B: bool = false;

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

const TILE: u32 = 16u;

// Both tiles are K-major: a_tile[kk][i] = op(A)[tile_row + i, k0 + kk], b_tile[kk][j] = op(B)[k0 + kk, tile_col + j].
var<workgroup> a_tile: array<array<f32, TILE>, TILE>;
var<workgroup> b_tile: array<array<f32, TILE>, TILE>;

/// op(A)[row, col], or 0 outside the matrix.
fn load_a(row: u32, col: u32) -> f32 {
    if (row >= params.m || col >= params.k) {
        return 0.0;
    }
    if (TRANS_A) {
        return a[col * params.lda + row];
    }
    return a[row * params.lda + col];
}

/// op(B)[row, col], or 0 outside the matrix.
fn load_b(row: u32, col: u32) -> f32 {
    if (row >= params.k || col >= params.n) {
        return 0.0;
    }
    if (TRANS_B) {
        return b[col * params.ldb + row];
    }
    return b[row * params.ldb + col];
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_id) local: vec3<u32>) {
    let tile_row = group.y * TILE;
    let tile_col = group.x * TILE;
    var acc = 0.0;
    for (var k0 = 0u; k0 < params.k; k0 += TILE) {
        // Neighbouring threads (in x) read neighbouring addresses of the operand as stored.
        if (TRANS_A) {
            a_tile[local.y][local.x] = load_a(tile_row + local.x, k0 + local.y);
        } else {
            a_tile[local.x][local.y] = load_a(tile_row + local.y, k0 + local.x);
        }
        if (TRANS_B) {
            b_tile[local.x][local.y] = load_b(k0 + local.x, tile_col + local.y);
        } else {
            b_tile[local.y][local.x] = load_b(k0 + local.y, tile_col + local.x);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE; kk++) {
            acc += a_tile[kk][local.y] * b_tile[kk][local.x];
        }
        workgroupBarrier();
    }
    let row = tile_row + local.y;
    let col = tile_col + local.x;
    if (row < params.m && col < params.n) {
        let index = row * params.ldc + col;
        // β = 0 must not read C: it may hold NaN.
        if (params.beta == 0.0) {
            c[index] = params.alpha * acc;
        } else {
            c[index] = params.alpha * acc + params.beta * c[index];
        }
    }
}
