//! The register-blocked kernel family for modern GPUs: one generator from a parameter set to WGSL
//! and to OpenCL C, and the parameter sets themselves, as data (like CLBlast's tuned database).
//!
//! A workgroup of (BN/TN)×(BM/TM) threads computes a BM×BN tile of C, stepping through K in slabs of
//! BK staged K-major in workgroup memory as vec4. Each thread accumulates TM×TN outputs in TM·TN/4
//! explicitly named `vec4` variables (an indexed private array would spill), and the K loop over a
//! slab is unrolled in the generated text.
//!
//! Thread (tx, ty) owns rows `tile_row + (v·WY + ty)·4 + e` (v < TM/4, e < 4) and column quads
//! `tile_col + (c·WX + tx)·4` (c < TN/4), WX = BN/TN, WY = BM/TM: neighbouring threads read
//! neighbouring vec4s of the B slab (no bank conflicts) and the same vec4 of the A slab (broadcast),
//! and their stores to C are contiguous.
//!
//! With K groups (`k_groups` = 2, name `_kg2`) the workgroup holds two such thread grids: each
//! computes the whole tile over one half of every slab, and the second hands its sums to the first
//! through workgroup memory at the end. Twice the threads share each slab's loads and the tile, so
//! a GEMM of about one tile per core runs twice the warps per core to hide latency with, at the same
//! FMAs per workgroup-memory read. On an H100 that pays for split-K's slices (64×64×65536 in 128
//! slices: 0.042 ms against 0.060) and not for whole squares (`benchmarks/NOTES.md`, v12–v13).
//!
//! A member's source is its language's prelude ([`WGSL_PRELUDE`], [`OPENCL_PRELUDE`]) followed by
//! its slabs and entry point, which load through the prelude's guarded `quad_a`/`quad_b` and store
//! through its `store4`. The two texts are the same statements: [`Language`] spells each one, so
//! a tiling measured on one API is the tiling that runs on the other.

use super::spec::{KernelSpec, OPENCL_PRELUDE, WGSL_PRELUDE};
use std::borrow::Cow;
use std::fmt::Write;

/// One member of the family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileParams {
    /// Rows of C computed by one workgroup (BM).
    pub bm: u32,
    /// Columns of C computed by one workgroup (BN).
    pub bn: u32,
    /// Depth of the K slab staged in workgroup memory per step.
    pub bk: u32,
    /// Rows of C computed by one thread (TM).
    pub tm: u32,
    /// Columns of C computed by one thread (TN).
    pub tn: u32,
    /// Grouped workgroup order: bands of this many tile-rows walked column by column, so workgroups
    /// running together share B panels in L2 (0: plain row-major order).
    pub group_m: u32,
    /// How K slabs are staged through workgroup memory.
    pub staging: Staging,
    /// Thread grids that split each slab's depth between them and sum at the end (1 or 2).
    pub k_groups: u32,
}

/// How a member moves K slabs from global to workgroup memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Staging {
    /// Load, barrier, compute, barrier.
    Plain,
    /// Load the next slab into registers while computing this one (hides global latency); name `_p`.
    Prefetch,
    /// As Prefetch, with two workgroup buffers: store the next slab into the other half while this
    /// one is read, so one barrier per slab instead of two; name `_db`.
    DoubleBuffer,
}

/// The tuned parameter sets: every one must pass [`TileParams::validate`] (a test proves it).
pub const FAMILY: [TileParams; 11] = [
    TileParams::new(128, 128, 8, 8, 8, 0, Staging::Plain),
    TileParams::new(128, 128, 16, 8, 8, 0, Staging::Plain),
    TileParams::new(128, 64, 16, 8, 4, 0, Staging::Plain),
    TileParams::new(64, 128, 16, 4, 8, 0, Staging::Plain),
    TileParams::new(64, 64, 16, 4, 4, 0, Staging::Plain),
    TileParams::new(128, 128, 8, 8, 8, 0, Staging::Prefetch),
    TileParams::new(128, 128, 8, 8, 8, 8, Staging::Prefetch),
    TileParams::new(128, 128, 8, 8, 8, 0, Staging::DoubleBuffer),
    TileParams::new(64, 64, 16, 4, 4, 0, Staging::DoubleBuffer),
    TileParams::new(128, 64, 16, 8, 4, 0, Staging::Prefetch),
    TileParams::new(64, 64, 32, 4, 4, 0, Staging::Prefetch).with_k_groups(2),
];

/// The most threads a member may use. Members over wgpu's default limits (256 threads, 16 KiB of
/// workgroup memory) run where the device's own limits hold them: a backend offers a kernel only
/// for devices whose limits it fits (`check_unsplittable`).
const MAX_THREADS: u32 = 1024;

/// The most workgroup memory a member may use, bytes (NVIDIA's 48 KiB).
const MAX_WORKGROUP_BYTES: u32 = 48 * 1024;

impl TileParams {
    /// A member: workgroup tile BM×BN, slab depth BK, thread tile TM×TN, group order, staging.
    pub const fn new(
        bm: u32,
        bn: u32,
        bk: u32,
        tm: u32,
        tn: u32,
        group_m: u32,
        staging: Staging,
    ) -> Self {
        TileParams {
            bm,
            bn,
            bk,
            tm,
            tn,
            group_m,
            staging,
            k_groups: 1,
        }
    }

    /// This member with `k_groups` thread grids splitting each slab ([`TileParams::k_groups`]).
    pub const fn with_k_groups(self, k_groups: u32) -> Self {
        TileParams { k_groups, ..self }
    }

    /// The catalogue name, `rbBMxBNxBK_TMxTN[_gG][_p|_db][_kgG]`.
    pub fn name(&self) -> String {
        let mut name = format!(
            "rb{}x{}x{}_{}x{}",
            self.bm, self.bn, self.bk, self.tm, self.tn
        );
        if self.group_m > 0 {
            name += &format!("_g{}", self.group_m);
        }
        match self.staging {
            Staging::Plain => {}
            Staging::Prefetch => name += "_p",
            Staging::DoubleBuffer => name += "_db",
        }
        if self.k_groups > 1 {
            name += &format!("_kg{}", self.k_groups);
        }
        name
    }

    /// Threads per workgroup.
    pub fn threads(&self) -> u32 {
        self.group_threads() * self.k_groups
    }

    /// Threads of one K group: one per TM×TN block of the tile.
    fn group_threads(&self) -> u32 {
        (self.bm / self.tm.max(1)) * (self.bn / self.tn.max(1))
    }

    /// Checks the generator's constraints; the reason when one fails.
    pub fn validate(&self) -> Result<(), String> {
        let TileParams {
            bm, bn, bk, tm, tn, ..
        } = *self;
        let checks = [
            (tm > 0 && tn > 0 && bk > 0, "sizes must be positive"),
            (
                tm % 4 == 0 && tn % 4 == 0,
                "TM and TN must be multiples of 4 (vec4 accumulators)",
            ),
            (
                bk % 4 == 0,
                "BK must be a multiple of 4 (vec4 loads along K)",
            ),
            (
                bm % tm == 0 && bn % tn == 0,
                "BM and BN must be multiples of TM and TN",
            ),
            (
                self.threads() <= MAX_THREADS,
                "at most 1024 threads per workgroup",
            ),
            (
                4 * bk * (bm + bn) * self.buffers() <= MAX_WORKGROUP_BYTES,
                "at most 48 KiB of workgroup memory",
            ),
            (
                matches!(self.k_groups, 1 | 2) && bk % self.k_groups == 0,
                "one or two K groups, each an equal share of BK",
            ),
            (
                self.buffers() * bm * bk / 4 >= self.group_threads(),
                "the A slab must hold a vec4 per thread of a K group (the sum of the groups)",
            ),
            (
                (bm * bk / 4) % self.threads() == 0 && (bn * bk / 4) % self.threads() == 0,
                "each slab's vec4 count must be a multiple of the thread count",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, reason)) => Err(format!("{}: {reason}", self.name())),
            None => Ok(()),
        }
    }

    /// The catalogue entry of this member, with its generated WGSL.
    pub fn spec(&self) -> Result<KernelSpec, String> {
        self.validate()?;
        Ok(KernelSpec {
            name: self.name(),
            tile_m: self.bm,
            tile_n: self.bn,
            tile_k: self.bk,
            workgroup: [self.bn / self.tn, self.bm / self.tm * self.k_groups],
            thread_tile: [self.tm, self.tn],
            vector_width: 4,
            wgsl: Cow::Owned(self.source(Language::Wgsl)),
            opencl: Some(Cow::Owned(self.source(Language::OpenCl))),
            buffers: self.buffers(),
            prefetch: self.staging != Staging::Plain,
            group_m: self.group_m,
            split_k: 1,
            stream_k: 0,
        })
    }

    /// Generates this member in `language`, prelude first (call after `validate`).
    pub fn source(&self, language: Language) -> String {
        self.generate(language, None)
    }

    /// Generates this member as a stream-K kernel of `groups` persistent workgroups, in
    /// `language` (call after `validate`; one K group only).
    ///
    /// The tiles are scheduled on a grid of G = `groups` workgroups: their K loops, tile by tile,
    /// are one range of iterations cut into G equal shares (the first `extra` one longer), so no
    /// slot idles at the end. Each stretch of a share within one tile is computed as the plain
    /// kernel computes a tile over those slabs; a stretch covering its whole tile is stored into
    /// C; any other is the first or the last of its share (only those can start or end inside a
    /// tile) and goes raw to the workgroup's slot 0 or 1 of the partial tiles. The fixup pass
    /// (`STREAM_K_FIXUP`, one workgroup per tile) finds the workgroups that shared its tile from
    /// the same arithmetic and sums their slots in workgroup order (a result repeats bit for bit)
    /// into C with α and β.
    pub fn stream_k_source(&self, language: Language, groups: u32) -> String {
        self.generate(language, Some(groups))
    }

    fn generate(&self, l: Language, stream_k: Option<u32>) -> String {
        let TileParams {
            bm,
            bn,
            bk,
            tm,
            tn,
            group_m,
            staging,
            k_groups,
        } = *self;
        let (wx, wy) = (bn / tn, bm / tm);
        let buffers = self.buffers();
        // Elements (vec4s) of one slab of A and of B; the second buffer of each starts there.
        let (slab_a, slab_b) = (bk * bm / 4, bk * bn / 4);
        let size_k = l.size('k');
        let mut w = String::from(match l {
            Language::Wgsl => WGSL_PRELUDE,
            Language::OpenCl => OPENCL_PRELUDE,
        });
        let _ = writeln!(
            w,
            "// Generated by tilegemm (src/kernel/family.rs) for {}: BM={bm} BN={bn} BK={bk} TM={tm} TN={tn} group_m={group_m} staging={staging:?} k_groups={k_groups} stream_k={stream_k:?}.",
            self.name()
        );
        w.push_str(&l.entry_point(
            (wx, wy * k_groups),
            (buffers * slab_a, buffers * slab_b),
            stream_k.is_some(),
        ));
        l.uint(&mut w, "flat", &format!("lyz * {wx}u + lx"));
        if k_groups > 1 {
            // K group lz reads rows [lz·BK/G, (lz+1)·BK/G) of every slab.
            l.uint(&mut w, "ly", &format!("lyz % {wy}u"));
            l.uint(&mut w, "lz", &format!("lyz / {wy}u"));
            l.uint(&mut w, "kz_a", &format!("lz * {}u", bk / k_groups * bm / 4));
            l.uint(&mut w, "kz_b", &format!("lz * {}u", bk / k_groups * bn / 4));
        } else {
            l.uint(&mut w, "ly", "lyz");
        }
        let tile_quads = bm * bn / 4;
        if let Some(groups) = stream_k {
            self.emit_stream_k_head(&mut w, l, groups);
        } else {
            self.emit_tile_origin(&mut w, l, None);
            l.uint(&mut w, "k_start", "0u");
            l.uint(&mut w, "k_end", &size_k);
        }
        self.emit_zero_accumulators(&mut w, l);
        let (loads_a, loads_b) = self.loads_per_thread();
        let declare = |w: &mut String, indent: &str| {
            for name in (0..loads_a)
                .map(|i| format!("pa{i}"))
                .chain((0..loads_b).map(|i| format!("pb{i}")))
            {
                let _ = writeln!(w, "{indent}{}", l.zero_float4(&name));
            }
        };
        let barrier = l.barrier();
        let k_loop = l.k_loop(bk);
        match staging {
            Staging::Plain => {
                let _ = writeln!(w, "    {k_loop} {{");
                w.push_str("        {\n");
                declare(&mut w, "            ");
                self.emit_loads(&mut w, "k0", "            ");
                self.emit_stores(&mut w, l, "0u", "0u");
                let _ = writeln!(w, "        }}\n        {barrier}");
                self.emit_slab(&mut w, l, "0u", "0u");
                let _ = writeln!(w, "        {barrier}\n    }}");
            }
            Staging::Prefetch => {
                // The first slab is loaded before the loop; each iteration stores the slab in hand,
                // then issues the next slab's global loads before computing, so their latency
                // overlaps it.
                declare(&mut w, "    ");
                w.push_str("    if (k_start < k_end) {\n");
                self.emit_loads(&mut w, "k_start", "        ");
                w.push_str("    }\n");
                let _ = writeln!(w, "    {k_loop} {{");
                self.emit_stores(&mut w, l, "0u", "0u");
                let _ = writeln!(w, "        {barrier}");
                let _ = writeln!(w, "        if (k0 + {bk}u < k_end) {{");
                self.emit_loads(&mut w, &format!("k0 + {bk}u"), "            ");
                w.push_str("        }\n");
                self.emit_slab(&mut w, l, "0u", "0u");
                let _ = writeln!(w, "        {barrier}\n    }}");
            }
            Staging::DoubleBuffer => {
                // Half `stage` holds the slab being computed; the next slab goes to the other half,
                // so the one barrier per slab both publishes it and retires the half just read.
                declare(&mut w, "    ");
                w.push_str("    if (k_start < k_end) {\n");
                self.emit_loads(&mut w, "k_start", "        ");
                w.push_str("    }\n");
                self.emit_stores(&mut w, l, "0u", "0u");
                let _ = writeln!(w, "    {barrier}\n    {}", l.var_uint("stage", "0u"));
                let _ = writeln!(w, "    {k_loop} {{");
                let _ = writeln!(
                    w,
                    "        {}",
                    l.bool("more", &format!("k0 + {bk}u < k_end"))
                );
                w.push_str("        if (more) {\n");
                self.emit_loads(&mut w, &format!("k0 + {bk}u"), "            ");
                w.push_str("        }\n");
                self.emit_slab(
                    &mut w,
                    l,
                    &format!("stage * {slab_a}u"),
                    &format!("stage * {slab_b}u"),
                );
                w.push_str("        if (more) {\n");
                self.emit_stores(
                    &mut w,
                    l,
                    &format!("(1u - stage) * {slab_a}u"),
                    &format!("(1u - stage) * {slab_b}u"),
                );
                let _ = writeln!(
                    w,
                    "        }}\n        {barrier}\n        stage = 1u - stage;\n    }}"
                );
            }
        }
        let indent = if k_groups > 1 {
            self.emit_group_sum(&mut w, l);
            w.push_str("    if (lz == 0u) {\n");
            "        "
        } else {
            "    "
        };
        if stream_k.is_some() {
            // A whole tile goes to C; a piece to the workgroup's first slot if it is the share's
            // first, else to its second.
            w.push_str("    if (k_first == 0u && k_last == k_iters) {\n");
            self.emit_tile_outputs(&mut w, "    ", TileOutput::store);
            w.push_str("    } else {\n");
            let piece = l.select("it == begin", "0u", "1u");
            l.uint(
                &mut w,
                "slot",
                &format!("(2u * gx + {piece}) * {tile_quads}u"),
            );
            self.emit_tile_outputs(&mut w, "    ", |o| {
                format!("partials[slot + {}] = {};", o.quad, o.acc)
            });
            w.push_str("    }\n    it = it + k_last - k_first;\n    }\n");
        } else {
            self.emit_tile_outputs(&mut w, indent, TileOutput::store);
        }
        if k_groups > 1 {
            w.push_str("    }\n");
        }
        w.push_str("}\n");
        w
    }

    /// A stream-K member's schedule, through the head of its loop over work: the counts, the fixup
    /// pass (whole, ending in `return`), then the loop over this workgroup's share of every
    /// tile's slabs, which defines `tile`, `k_first`, `k_last`, `k_start`, `k_end` and the tile's
    /// origin for the body that follows (the tail advances `it`).
    ///
    /// Every tile is shared out: running the tiles past whole waves as plain tiles first (so that
    /// neighbours are in flight together) was measured and lost — its extra live values cost the
    /// 128×128 member, at 127 registers, its second workgroup per SM (`benchmarks/NOTES.md` v15).
    fn emit_stream_k_head(&self, w: &mut String, l: Language, groups: u32) {
        let TileParams { bm, bn, bk, .. } = *self;
        let tile_quads = bm * bn / 4;
        let (size_m, size_n, size_k) = (l.size('m'), l.size('n'), l.size('k'));
        l.uint(w, "tiles_n", &format!("({size_n} + {}u) / {bn}u", bn - 1));
        l.uint(w, "tiles_m", &format!("({size_m} + {}u) / {bm}u", bm - 1));
        // At least one slab per tile: with K = 0 each tile is still stored (β·C).
        l.uint(
            w,
            "k_iters",
            &format!("max(1u, ({size_k} + {}u) / {bk}u)", bk - 1),
        );
        l.uint(
            w,
            "share",
            &format!("tiles_m * tiles_n * k_iters / {groups}u"),
        );
        l.uint(
            w,
            "extra",
            &format!("tiles_m * tiles_n * k_iters % {groups}u"),
        );
        // The fixup: workgroup g's share starts at g·share + min(g, extra), so the owner of
        // iteration i is i / (share + 1) among the longer shares, counted on after them.
        w.push_str("    if (STREAM_K_FIXUP) {\n");
        l.uint(w, "tile", "gy * tiles_n + gx");
        self.emit_tile_origin(w, l, Some("tile"));
        l.uint(w, "first", "tile * k_iters");
        let owner = |i: &str| {
            l.select(
                &format!("{i} < extra * (share + 1u)"),
                &format!("{i} / (share + 1u)"),
                &format!("extra + ({i} - extra * (share + 1u)) / share"),
            )
        };
        l.uint(w, "g_first", &owner("first"));
        l.uint(w, "g_last", &owner("(first + k_iters - 1u)"));
        let _ = writeln!(
            w,
            "    {}",
            l.bool("tail", "g_first * share + min(g_first, extra) != first")
        );
        // A tile of one workgroup was stored whole by it.
        w.push_str("    if (g_first != g_last) {\n");
        self.emit_zero_accumulators(w, l);
        let _ = writeln!(
            w,
            "    {} {{",
            l.for_uint("g", "g_first", "g <= g_last", "g++")
        );
        let slot = l.select("g == g_first && tail", "1u", "0u");
        l.uint(w, "slot", &format!("(2u * g + {slot}) * {tile_quads}u"));
        self.emit_tile_outputs(w, "        ", |o| {
            format!("{0} = {0} + partials[slot + {1}];", o.acc, o.quad)
        });
        w.push_str("    }\n");
        self.emit_tile_outputs(w, "    ", TileOutput::store);
        w.push_str("    }\n    return;\n    }\n");
        l.uint(w, "begin", "gx * share + min(gx, extra)");
        let longer = l.select("gx < extra", "1u", "0u");
        l.uint(w, "end", &format!("begin + share + {longer}"));
        let _ = writeln!(w, "    {}", l.var_uint("it", "begin"));
        w.push_str("    while (it < end) {\n");
        l.uint(w, "tile", "it / k_iters");
        l.uint(w, "k_first", "it % k_iters");
        l.uint(w, "k_last", "min(k_iters, k_first + (end - it))");
        l.uint(w, "k_start", &format!("k_first * {bk}u"));
        l.uint(w, "k_end", &format!("min({size_k}, k_last * {bk}u)"));
        self.emit_tile_origin(w, l, Some("tile"));
    }

    /// `tile_row` and `tile_col`, the first row and column of this workgroup's tile of C: from
    /// the grid (`linear` None) or from the tile's `linear` index (stream-K, which defines
    /// `tiles_n`); in bands of `group_m` tile-rows walked column by column where it is set.
    fn emit_tile_origin(&self, w: &mut String, l: Language, linear: Option<&str>) {
        let TileParams {
            bm, bn, group_m, ..
        } = *self;
        if group_m == 0 {
            let (row, col) = match linear {
                None => ("gy".to_string(), "gx".to_string()),
                Some(id) => (format!("({id} / tiles_n)"), format!("({id} % tiles_n)")),
            };
            l.uint(w, "tile_row", &format!("{row} * {bm}u"));
            l.uint(w, "tile_col", &format!("{col} * {bn}u"));
            return;
        }
        let (size_m, size_n) = (l.size('m'), l.size('n'));
        l.uint(w, "groups_n", &format!("({size_n} + {}u) / {bn}u", bn - 1));
        l.uint(w, "groups_m", &format!("({size_m} + {}u) / {bm}u", bm - 1));
        l.uint(w, "id", linear.unwrap_or("gy * groups_n + gx"));
        l.uint(w, "band", &format!("{group_m}u * groups_n"));
        l.uint(w, "first_m", &format!("(id / band) * {group_m}u"));
        l.uint(
            w,
            "band_rows",
            &format!("min(groups_m - first_m, {group_m}u)"),
        );
        l.uint(
            w,
            "tile_row",
            &format!("(first_m + (id % band) % band_rows) * {bm}u"),
        );
        l.uint(w, "tile_col", &format!("((id % band) / band_rows) * {bn}u"));
    }

    /// The thread's TM×TN/4 vec4 accumulators, at zero.
    fn emit_zero_accumulators(&self, w: &mut String, l: Language) {
        for v in 0..self.tm {
            for c in 0..self.tn / 4 {
                let _ = writeln!(w, "    {}", l.zero_float4(&format!("acc_{v}_{c}")));
            }
        }
    }

    /// One statement per accumulator of the thread, `statement` of its [`TileOutput`]. Thread
    /// (tx, ty)'s quads sit WX apart along a row and its row groups WY·4 rows apart, so
    /// neighbouring threads touch neighbouring quads, in C and in a partial tile alike.
    fn emit_tile_outputs(
        &self,
        w: &mut String,
        indent: &str,
        statement: impl Fn(&TileOutput) -> String,
    ) {
        let TileParams { bm, bn, tm, tn, .. } = *self;
        let (wx, wy) = (bn / tn, bm / tm);
        for v in 0..tm / 4 {
            for e in 0..4 {
                for c in 0..tn / 4 {
                    let (rows, cols) = (v * wy, c * wx);
                    let output = TileOutput {
                        acc: format!("acc_{}_{c}", v * 4 + e),
                        row: format!("tile_row + ({rows}u + ly) * 4u + {e}u"),
                        col: format!("tile_col + ({cols}u + lx) * 4u"),
                        quad: format!("({rows}u + ly) * {bn}u + {}u + lx", e * bn / 4 + cols),
                    };
                    let _ = writeln!(w, "{indent}{}", statement(&output));
                }
            }
        }
    }

    /// K group 1 adds its accumulators into group 0's through the A slab (free once the K loop's
    /// last barrier has passed), in rounds of as many vec4s per thread as the slab holds; thread
    /// `ly·WX + lx` of a group owns slot `round_slot·threads + ly·WX + lx` (consecutive threads,
    /// consecutive vec4s).
    fn emit_group_sum(&self, w: &mut String, l: Language) {
        let group = self.group_threads();
        let per_round = (self.buffers() * self.bm * self.bk / 4) / group;
        let accumulators: Vec<String> = (0..self.tm)
            .flat_map(|r| (0..self.tn / 4).map(move |c| format!("acc_{r}_{c}")))
            .collect();
        let wx = self.bn / self.tn;
        let barrier = l.barrier();
        for round in accumulators.chunks(per_round as usize) {
            let slots: Vec<(String, &String)> = (0..)
                .map(|slot| format!("a_s[{}u + ly * {wx}u + lx]", slot * group))
                .zip(round)
                .collect();
            w.push_str("    if (lz == 1u) {\n");
            for (slot, acc) in &slots {
                let _ = writeln!(w, "        {slot} = {acc};");
            }
            let _ = writeln!(w, "    }}\n    {barrier}\n    if (lz == 0u) {{");
            for (slot, acc) in &slots {
                let _ = writeln!(w, "        {acc} = {acc} + {slot};");
            }
            let _ = writeln!(w, "    }}\n    {barrier}");
        }
    }

    /// Workgroup buffers per operand: two when double-buffered.
    pub fn buffers(&self) -> u32 {
        if self.staging == Staging::DoubleBuffer {
            2
        } else {
            1
        }
    }

    /// vec4 loads per thread per slab, of A and of B.
    fn loads_per_thread(&self) -> (u32, u32) {
        let threads = self.threads();
        (
            (self.bm * self.bk / 4) / threads,
            (self.bn * self.bk / 4) / threads,
        )
    }

    /// Global loads of one slab into `pa*` / `pb*`. Quad q of a slab, as stored: A transposed is
    /// BK rows of BM/4 quads along M, A as is BM rows of BK/4 quads along K; B likewise.
    fn emit_loads(&self, w: &mut String, k_base: &str, indent: &str) {
        let TileParams { bm, bn, bk, .. } = *self;
        let threads = self.threads();
        let (am, bnq, kq) = (bm / 4, bn / 4, bk / 4);
        let (loads_a, loads_b) = self.loads_per_thread();
        for l in 0..loads_a {
            let q = format!("(flat + {}u)", l * threads);
            let _ = writeln!(w, "{indent}if (TRANS_A) {{");
            let _ = writeln!(
                w,
                "{indent}    pa{l} = quad_a({k_base} + {q} / {am}u, tile_row + ({q} % {am}u) * 4u);"
            );
            let _ = writeln!(w, "{indent}}} else {{");
            let _ = writeln!(
                w,
                "{indent}    pa{l} = quad_a(tile_row + {q} / {kq}u, {k_base} + ({q} % {kq}u) * 4u);"
            );
            let _ = writeln!(w, "{indent}}}");
        }
        for l in 0..loads_b {
            let q = format!("(flat + {}u)", l * threads);
            let _ = writeln!(w, "{indent}if (TRANS_B) {{");
            let _ = writeln!(
                w,
                "{indent}    pb{l} = quad_b(tile_col + {q} / {kq}u, {k_base} + ({q} % {kq}u) * 4u);"
            );
            let _ = writeln!(w, "{indent}}} else {{");
            let _ = writeln!(
                w,
                "{indent}    pb{l} = quad_b({k_base} + {q} / {bnq}u, tile_col + ({q} % {bnq}u) * 4u);"
            );
            let _ = writeln!(w, "{indent}}}");
        }
    }

    /// Writes the loaded quads into the K-major slabs: quads along M (A transposed) or N (B as is)
    /// go in whole; quads along K are scattered over four K rows.
    fn emit_stores(&self, w: &mut String, l: Language, off_a: &str, off_b: &str) {
        let TileParams { bm, bn, .. } = *self;
        let threads = self.threads();
        let (loads_a, loads_b) = self.loads_per_thread();
        for load in 0..loads_a {
            let q = format!("(flat + {}u)", load * threads);
            let _ = writeln!(
                w,
                "        if (TRANS_A) {{\n            a_s[{off_a} + {q}] = pa{load};\n        }} else {{"
            );
            self.emit_scatter(w, l, ("a_s", off_a, bm / 4), &q, &format!("pa{load}"));
            w.push_str("        }\n");
        }
        for load in 0..loads_b {
            let q = format!("(flat + {}u)", load * threads);
            w.push_str("        if (TRANS_B) {\n");
            self.emit_scatter(w, l, ("b_s", off_b, bn / 4), &q, &format!("pb{load}"));
            let _ = writeln!(
                w,
                "        }} else {{\n            b_s[{off_b} + {q}] = pb{load};\n        }}"
            );
        }
    }

    /// Quad `q` of a slab loaded along K (its operand's row q / (BK/4), K offset (q % (BK/4))·4),
    /// `value`, scattered lane by lane over four K rows of the K-major slab `(array, offset, vec4s
    /// per K row)`.
    fn emit_scatter(
        &self,
        w: &mut String,
        l: Language,
        (array, offset, row_quads): (&str, &str, u32),
        q: &str,
        value: &str,
    ) {
        let kq = self.bk / 4;
        let _ = writeln!(
            w,
            "            {}",
            l.let_uint("i", &format!("{q} / {kq}u"))
        );
        let _ = writeln!(
            w,
            "            {}",
            l.let_uint("kk", &format!("({q} % {kq}u) * 4u"))
        );
        for (e, comp) in ["x", "y", "z", "w"].iter().enumerate() {
            let index = format!("{offset} + (kk + {e}u) * {row_quads}u + i / 4u");
            let store = l.set_lane(array, &index, "i % 4u", &format!("{value}.{comp}"));
            let _ = writeln!(w, "            {store}");
        }
    }

    /// The unrolled slab (this K group's share of it): per kk, TM/4 + TN/4 vec4 reads and TM·TN/4
    /// vec4 FMAs.
    fn emit_slab(&self, w: &mut String, l: Language, off_a: &str, off_b: &str) {
        let TileParams {
            bm,
            bn,
            bk,
            tm,
            tn,
            k_groups,
            ..
        } = *self;
        let (wx, wy) = (bn / tn, bm / tm);
        let (kz_a, kz_b) = if k_groups > 1 {
            (" + kz_a", " + kz_b")
        } else {
            ("", "")
        };
        for kk in 0..bk / k_groups {
            w.push_str("        {\n");
            for v in 0..tm / 4 {
                let read = format!("a_s[{off_a}{kz_a} + {}u + {}u + ly]", kk * bm / 4, v * wy);
                let _ = writeln!(w, "            {}", l.float4(&format!("a{v}"), &read));
            }
            for c in 0..tn / 4 {
                let read = format!("b_s[{off_b}{kz_b} + {}u + {}u + lx]", kk * bn / 4, c * wx);
                let _ = writeln!(w, "            {}", l.float4(&format!("b{c}"), &read));
            }
            for v in 0..tm / 4 {
                for (e, comp) in ["x", "y", "z", "w"].iter().enumerate() {
                    let r = v * 4 + e as u32;
                    let a = l.splat(&format!("a{v}.{comp}"));
                    for c in 0..tn / 4 {
                        let _ =
                            writeln!(w, "            acc_{r}_{c} = fma({a}, b{c}, acc_{r}_{c});");
                    }
                }
            }
            w.push_str("        }\n");
        }
    }
}

/// One vec4 accumulator of a thread and where it goes: row `row`, columns `col`..`col`+4 of C,
/// and quad `quad` of a row-major BM×BN tile of vec4s (a stream-K partial tile).
struct TileOutput {
    acc: String,
    row: String,
    col: String,
    quad: String,
}

impl TileOutput {
    /// Stores the accumulator into C with α and β (the prelude's `store4`).
    fn store(&self) -> String {
        format!("store4({}, {}, {});", self.row, self.col, self.acc)
    }
}

/// The language a member is generated in: how each of the generator's statements is spelt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    /// WGSL, for wgpu: entry point `main`, the problem in the uniform `params`.
    Wgsl,
    /// OpenCL C: kernel `gemm(GEMM_ARGS)`, the problem in its arguments.
    OpenCl,
}

impl Language {
    /// The entry point's opening, through the batch entry and the names `gx`, `gy` (workgroup)
    /// and `lx`, `lyz` (thread within it), for a `(wx, wy)` workgroup with slabs of `(a, b)`
    /// vec4s in workgroup memory; a `stream_k` kernel also binds its partial tiles `partials`
    /// and reads `STREAM_K_FIXUP`.
    fn entry_point(
        self,
        (wx, wy): (u32, u32),
        (a_quads, b_quads): (u32, u32),
        stream_k: bool,
    ) -> String {
        match self {
            Language::Wgsl => {
                let stream_k = if stream_k {
                    "// Stream-K: two partial BM×BN tiles per workgroup, and whether this is the pass that sums them.\n\
                     @group(0) @binding(4) var<storage, read_write> partials: array<vec4<f32>>;\n\
                     override STREAM_K_FIXUP: bool = false;\n"
                } else {
                    ""
                };
                format!(
                    "{stream_k}var<workgroup> a_s: array<vec4<f32>, {a_quads}>;\n\
                     var<workgroup> b_s: array<vec4<f32>, {b_quads}>;\n\n\
                     @compute @workgroup_size({wx}, {wy}, 1)\n\
                     fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_id) local: vec3<u32>) {{\n\
                     \x20   enter_batch(group.z);\n\
                     \x20   let gx = group.x;\n    let gy = group.y;\n\
                     \x20   let lx = local.x;\n    let lyz = local.y;\n"
                )
            }
            Language::OpenCl => {
                let (defaults, partials) = if stream_k {
                    (
                        "// Stream-K: whether this is the pass that sums the partial tiles.\n\
                         #ifndef STREAM_K_FIXUP\n#define STREAM_K_FIXUP 0\n#endif\n",
                        ", __global float4* restrict partials",
                    )
                } else {
                    ("", "")
                };
                format!(
                    "{defaults}__kernel __attribute__((reqd_work_group_size({wx}, {wy}, 1)))\n\
                     void gemm(GEMM_ARGS{partials}) {{\n\
                     \x20   ENTER_BATCH();\n\
                     \x20   __local float4 a_s[{a_quads}];\n\
                     \x20   __local float4 b_s[{b_quads}];\n\
                     \x20   const uint gx = get_group_id(0), gy = get_group_id(1);\n\
                     \x20   const uint lx = get_local_id(0), lyz = get_local_id(1);\n"
                )
            }
        }
    }

    /// The problem's size `dimension` ('m', 'n' or 'k').
    fn size(self, dimension: char) -> String {
        match self {
            Language::Wgsl => format!("params.{dimension}"),
            Language::OpenCl => dimension.to_ascii_uppercase().to_string(),
        }
    }

    /// An unsigned constant.
    fn let_uint(self, name: &str, value: &str) -> String {
        match self {
            Language::Wgsl => format!("let {name} = {value};"),
            Language::OpenCl => format!("const uint {name} = {value};"),
        }
    }

    /// [`Language::let_uint`] as a statement of the entry point's body.
    fn uint(self, w: &mut String, name: &str, value: &str) {
        let _ = writeln!(w, "    {}", self.let_uint(name, value));
    }

    /// An unsigned variable.
    fn var_uint(self, name: &str, value: &str) -> String {
        match self {
            Language::Wgsl => format!("var {name} = {value};"),
            Language::OpenCl => format!("uint {name} = {value};"),
        }
    }

    /// A boolean constant.
    fn bool(self, name: &str, value: &str) -> String {
        match self {
            Language::Wgsl => format!("let {name} = {value};"),
            Language::OpenCl => format!("const bool {name} = {value};"),
        }
    }

    /// A vec4 constant.
    fn float4(self, name: &str, value: &str) -> String {
        match self {
            Language::Wgsl => format!("let {name} = {value};"),
            Language::OpenCl => format!("const float4 {name} = {value};"),
        }
    }

    /// A vec4 variable starting at zero.
    fn zero_float4(self, name: &str) -> String {
        match self {
            Language::Wgsl => format!("var {name} = vec4<f32>(0.0);"),
            Language::OpenCl => format!("float4 {name} = (float4)(0.0f);"),
        }
    }

    /// A vec4 of four copies of the scalar `value`.
    fn splat(self, value: &str) -> String {
        match self {
            Language::Wgsl => format!("vec4<f32>({value})"),
            Language::OpenCl => format!("(float4)({value})"),
        }
    }

    /// Lane `lane` of element `index` of the workgroup vec4 array `array` set to `value`. OpenCL C
    /// has no run-time lane index: the array is addressed as floats there.
    fn set_lane(self, array: &str, index: &str, lane: &str, value: &str) -> String {
        match self {
            Language::Wgsl => format!("{array}[{index}][{lane}] = {value};"),
            Language::OpenCl => {
                format!("((__local float*){array})[({index}) * 4u + {lane}] = {value};")
            }
        }
    }

    /// The workgroup barrier over workgroup memory.
    fn barrier(self) -> &'static str {
        match self {
            Language::Wgsl => "workgroupBarrier();",
            Language::OpenCl => "barrier(CLK_LOCAL_MEM_FENCE);",
        }
    }

    /// The head of the loop over K from `k_start` to `k_end` in slabs of `bk`, counter `k0`.
    fn k_loop(self, bk: u32) -> String {
        self.for_uint("k0", "k_start", "k0 < k_end", &format!("k0 += {bk}u"))
    }

    /// The head of a loop of the unsigned `name` from `from` while `condition`, by `step`.
    fn for_uint(self, name: &str, from: &str, condition: &str, step: &str) -> String {
        format!("for ({} {condition}; {step})", self.var_uint(name, from))
    }

    /// `then` where `condition` holds, else `otherwise` (WGSL evaluates both).
    fn select(self, condition: &str, then: &str, otherwise: &str) -> String {
        match self {
            Language::Wgsl => format!("select({otherwise}, {then}, {condition})"),
            Language::OpenCl => format!("({condition} ? {then} : {otherwise})"),
        }
    }
}

/// The split-K members: (family member, slices of K), each named `<member>_sk<slices>`. Small
/// tiles with many slices for the thinnest outputs (64×64 is one 64×64 tile: 16 slices keep 16 of
/// an H100's 132 SMs busy, 128 slices all of them), larger tiles with fewer for outputs of a few
/// dozen tiles, and halves of K for outputs of about one tile per SM (1024² is 128 tiles of 128×64
/// and 64 of 128×128); the selector learns where each pays from measurements.
pub const SPLIT_K: [(&str, u32); 9] = [
    ("rb64x64x16_4x4_db", 128),
    ("rb64x64x16_4x4_db", 64),
    ("rb64x64x16_4x4_db", 16),
    ("rb64x64x16_4x4", 4),
    ("rb64x64x32_4x4_p_kg2", 128),
    ("rb64x64x32_4x4_p_kg2", 16),
    ("rb128x64x16_8x4_p", 4),
    ("rb128x64x16_8x4_p", 2),
    ("rb128x128x8_8x8_g8_p", 2),
];

/// The stream-K members: (family member, persistent workgroups), each named
/// `<member>_streamk<groups>`: the member's tiles and slabs shared out evenly over a fixed grid, so
/// no wave of tiles runs part-empty (1536³ is 144 tiles of 128×128 for the 264 slots of two
/// workgroups on each of an H100's 132 SMs). 264 is those slots on an H100 or H200; on other devices
/// the selector learns whether it pays. The measured winners (`benchmarks/NOTES.md` v14): a grid of
/// 132 and the 64×64 member's lost at every shape measured. One K group only.
pub const STREAM_K: [(&str, u32); 2] = [("rb128x128x8_8x8_g8_p", 264), ("rb128x64x16_8x4_p", 264)];

/// Every member's catalogue entry, then the split-K members', then the stream-K members'.
pub(super) fn kernels() -> Vec<KernelSpec> {
    let members: Vec<KernelSpec> = FAMILY
        .iter()
        .map(|p| {
            p.spec()
                .expect("FAMILY members satisfy the generator's constraints (tested)")
        })
        .collect();
    let split = SPLIT_K.iter().map(|&(member, slices)| {
        let whole = members.iter().find(|m| m.name == member);
        KernelSpec {
            name: format!("{member}_sk{slices}"),
            split_k: slices,
            ..whole
                .expect("SPLIT_K names FAMILY members (tested)")
                .clone()
        }
    });
    let split: Vec<KernelSpec> = split.collect();
    let stream = STREAM_K.iter().map(|&(member, groups)| {
        let params = FAMILY.iter().find(|p| p.name() == member);
        let params = params.expect("STREAM_K names FAMILY members (tested)");
        let whole = members.iter().find(|m| m.name == member).expect("as above");
        KernelSpec {
            name: format!("{member}_streamk{groups}"),
            stream_k: groups,
            wgsl: Cow::Owned(params.stream_k_source(Language::Wgsl, groups)),
            opencl: Some(Cow::Owned(params.stream_k_source(Language::OpenCl, groups))),
            ..whole.clone()
        }
    });
    let stream: Vec<KernelSpec> = stream.collect();
    members.into_iter().chain(split).chain(stream).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_set_satisfies_the_constraints() {
        for params in FAMILY {
            params.validate().unwrap();
            assert_eq!(params.threads(), 256 * params.k_groups, "{}", params.name());
        }
    }

    /// Stream-K members are family members of one K group (the generator's stream-K epilogue
    /// has no group sum), each with its grid in its name and its fixup in its text.
    #[test]
    fn stream_k_members_have_one_k_group_and_a_fixup() {
        for (member, groups) in STREAM_K {
            let params = FAMILY.iter().find(|p| p.name() == member).unwrap();
            assert_eq!(params.k_groups, 1, "{member}");
            let spec = crate::kernel::find(&format!("{member}_streamk{groups}")).unwrap();
            assert_eq!((spec.stream_k, spec.whole_name()), (groups, member));
            for text in [&*spec.wgsl, spec.opencl.as_deref().unwrap()] {
                assert!(text.contains("if (STREAM_K_FIXUP) {"), "{member}");
                let share = format!("tiles_m * tiles_n * k_iters / {groups}u");
                assert!(text.contains(&share), "{member}");
            }
        }
    }

    #[test]
    fn bad_sets_are_refused_with_the_reason() {
        let bad = TileParams::new(128, 128, 8, 6, 8, 0, Staging::Plain);
        assert!(bad.validate().unwrap_err().contains("multiples of 4"));
        let too_many = TileParams::new(256, 128, 8, 4, 4, 0, Staging::Plain);
        assert!(too_many.validate().unwrap_err().contains("1024 threads"));
        let too_big = TileParams::new(128, 128, 64, 8, 8, 0, Staging::Plain);
        assert!(too_big.validate().unwrap_err().contains("48 KiB"));
        let three_groups = FAMILY[0].with_k_groups(3);
        assert!(three_groups.validate().unwrap_err().contains("K groups"));
    }

    #[test]
    fn k_groups_share_the_slab_and_the_second_hands_its_sums_to_the_first() {
        let p = TileParams::new(64, 64, 32, 4, 4, 0, Staging::Prefetch).with_k_groups(2);
        assert_eq!(p.name(), "rb64x64x32_4x4_p_kg2");
        let spec = p.spec().unwrap();
        assert_eq!((spec.workgroup, spec.invocations()), ([16, 32], 512));
        let wgsl = p.source(Language::Wgsl);
        // Each group computes half of every slab: BK/2 rows of FMAs in the text.
        assert_eq!(
            wgsl.matches("fma(").count() as u32,
            p.bk / 2 * p.tm * p.tn / 4
        );
        // 4 accumulators of 256 threads through a 512-vec4 A slab: two rounds of two.
        assert_eq!(wgsl.matches("a_s[256u + ly * 16u + lx] = acc_").count(), 2);
        assert_eq!(wgsl.matches("if (lz == 0u)").count(), 3);
        let opencl = p.source(Language::OpenCl);
        assert_eq!(
            opencl.matches("barrier(CLK_LOCAL_MEM_FENCE);").count(),
            2 + 4
        );
    }

    #[test]
    fn the_generated_text_matches_the_parameters() {
        let p = FAMILY[0];
        let wgsl = p.source(Language::Wgsl);
        assert!(wgsl.contains("@workgroup_size(16, 16, 1)"));
        assert_eq!(wgsl.matches("fma(").count() as u32, p.bk * p.tm * p.tn / 4);
        assert_eq!(wgsl.matches("    var acc_").count() as u32, p.tm * p.tn / 4);
        assert_eq!(
            wgsl.matches("store4(tile_row").count() as u32,
            p.tm * p.tn / 4
        );
    }
}
