// tile24: a 12×12 workgroup computes a 24×24 tile of C, 2×2 outputs per thread, K in slabs of 24,
// with vec4 global loads. A slab of either operand, as stored, is 24 rows of 24 floats = 144 quads:
// each thread loads exactly one quad of A and one of B per slab.
//
// A and B are bound as arrays of vec4 (tilegemm pads their buffers to 16 bytes). A quad is read with
// one 16-byte load when it lies wholly inside the matrix and its rows are 16-byte aligned
// (leading dimension % 4 == 0); otherwise element by element, each guarded. With every access
// guarded, the module runs without wgpu's runtime bounds checks.

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

override TRANS_A: bool = false;
override TRANS_B: bool = false;

@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

const TILE: u32 = 24u;
const SIDE: u32 = 12u;
const QUADS_PER_ROW: u32 = 6u;

var<workgroup> a_tile: array<array<f32, TILE>, TILE>;
var<workgroup> b_tile: array<array<f32, TILE>, TILE>;

/// Elements (row, col..col+4) of the stored A (rows × cols, row stride ld); 0 outside the matrix.
/// `col` is a multiple of 4.
fn quad_a(row: u32, col: u32, rows: u32, cols: u32, ld: u32) -> vec4<f32> {
    if (row >= rows) {
        return vec4<f32>(0.0);
    }
    let base = row * ld + col;
    if (ld % 4u == 0u && col + 3u < cols) {
        return a[base / 4u];
    }
    var q = vec4<f32>(0.0);
    for (var e = 0u; e < 4u; e++) {
        if (col + e < cols) {
            let i = base + e;
            q[e] = a[i / 4u][i % 4u];
        }
    }
    return q;
}

/// As `quad_a`, for the stored B.
fn quad_b(row: u32, col: u32, rows: u32, cols: u32, ld: u32) -> vec4<f32> {
    if (row >= rows) {
        return vec4<f32>(0.0);
    }
    let base = row * ld + col;
    if (ld % 4u == 0u && col + 3u < cols) {
        return b[base / 4u];
    }
    var q = vec4<f32>(0.0);
    for (var e = 0u; e < 4u; e++) {
        if (col + e < cols) {
            let i = base + e;
            q[e] = b[i / 4u][i % 4u];
        }
    }
    return q;
}

fn store(row: u32, col: u32, acc: f32) {
    if (row < params.m && col < params.n) {
        let index = row * params.ldc + col;
        if (params.beta == 0.0) {
            c[index] = params.alpha * acc;
        } else {
            c[index] = params.alpha * acc + params.beta * c[index];
        }
    }
}

@compute @workgroup_size(12, 12, 1)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_id) local: vec3<u32>) {
    let tile_row = group.y * TILE;
    let tile_col = group.x * TILE;
    // This thread's quad within a slab as stored: stored row `srow`, stored columns scol..scol+4.
    let flat = local.y * SIDE + local.x;
    let srow = flat / QUADS_PER_ROW;
    let scol = (flat % QUADS_PER_ROW) * 4u;
    var acc00 = 0.0;
    var acc01 = 0.0;
    var acc10 = 0.0;
    var acc11 = 0.0;
    for (var k0 = 0u; k0 < params.k; k0 += TILE) {
        if (TRANS_A) {
            // Stored k×m: the quad runs along M.
            let q = quad_a(k0 + srow, tile_row + scol, params.k, params.m, params.lda);
            a_tile[srow][scol] = q.x;
            a_tile[srow][scol + 1u] = q.y;
            a_tile[srow][scol + 2u] = q.z;
            a_tile[srow][scol + 3u] = q.w;
        } else {
            // Stored m×k: the quad runs along K.
            let q = quad_a(tile_row + srow, k0 + scol, params.m, params.k, params.lda);
            a_tile[scol][srow] = q.x;
            a_tile[scol + 1u][srow] = q.y;
            a_tile[scol + 2u][srow] = q.z;
            a_tile[scol + 3u][srow] = q.w;
        }
        if (TRANS_B) {
            // Stored n×k: the quad runs along K.
            let q = quad_b(tile_col + srow, k0 + scol, params.n, params.k, params.ldb);
            b_tile[scol][srow] = q.x;
            b_tile[scol + 1u][srow] = q.y;
            b_tile[scol + 2u][srow] = q.z;
            b_tile[scol + 3u][srow] = q.w;
        } else {
            // Stored k×n: the quad runs along N.
            let q = quad_b(k0 + srow, tile_col + scol, params.k, params.n, params.ldb);
            b_tile[srow][scol] = q.x;
            b_tile[srow][scol + 1u] = q.y;
            b_tile[srow][scol + 2u] = q.z;
            b_tile[srow][scol + 3u] = q.w;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE; kk++) {
            let a0 = a_tile[kk][local.y];
            let a1 = a_tile[kk][local.y + SIDE];
            let b0 = b_tile[kk][local.x];
            let b1 = b_tile[kk][local.x + SIDE];
            acc00 += a0 * b0;
            acc01 += a0 * b1;
            acc10 += a1 * b0;
            acc11 += a1 * b1;
        }
        workgroupBarrier();
    }
    let row = tile_row + local.y;
    let col = tile_col + local.x;
    store(row, col, acc00);
    store(row, col + SIDE, acc01);
    store(row + SIDE, col, acc10);
    store(row + SIDE, col + SIDE, acc11);
}
