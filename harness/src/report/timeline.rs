//! Witness timelines: a [`History`] and a witness rendered as one self-contained SVG (no
//! scripts, no external assets), so a race can be seen rather than read about.
//!
//! One lane per process (the harness, each worker) and one for the issuer's ledger; time
//! flows right. Each pool operation is a bar from `OpBegin` to `OpEnd` (red outline when it
//! failed); reads, writes (with short content hashes), redeems and API uses are marks on the
//! lane of the process that made them; token issues and family revocations sit on the issuer
//! lane. Tokens appear only as the tags already in the history, each coloured by its family
//! and generation (from the ledger's `Issued`), so two lanes redeeming the same token show the
//! same colour. The witness's records are haloed and numbered as in its text story, which is
//! printed under the lanes.
//!
//! The time axis is ordinal-ish: each record advances x by a small minimum plus its time gap,
//! capped, so bursts stay legible and long waits do not swallow the picture. A long history is
//! windowed: only the records around the witness's events are drawn, and each elided stretch
//! is a grey band with zig-zag edges saying how many events and how much time it hides.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use pool_core::world::{Event, OpKind, ReadOutcome, RefreshOutcome};

use crate::check::{op_kind_name, short, tok, Verdict, Witness};
use crate::history::{Ev, FinalStore, History, ProcId, RedeemVerdict, UseVerdict};

/// Histories up to this many records are drawn whole.
pub const DRAW_ALL: usize = 300;
/// Records drawn on each side of a witness event in a windowed timeline.
pub const CONTEXT: usize = 20;
/// Elided stretches shorter than this are drawn after all.
const MIN_GAP: usize = 6;

const LEFT: f64 = 130.0; // lane labels
const RIGHT: f64 = 40.0;
const TOP: f64 = 52.0; // title + axis
const LANE_H: f64 = 78.0;
const MID: f64 = 50.0; // bar centre within a lane
const GAP_W: f64 = 56.0;
const CHAR_W: f64 = 6.1; // 10px monospace
const STEP_H: f64 = 17.0;

/// One SVG per witness of `verdict`, as (anomaly, svg).
pub fn render(h: &History, verdict: &Verdict) -> Vec<(String, String)> {
    verdict
        .witnesses
        .iter()
        .map(|w| (w.anomaly.clone(), witness_svg(h, w)))
        .collect()
}

/// The colour of a token of `family`, `generation`: consecutive generations of one family and
/// the first generations of different families differ.
pub fn token_colour(family: u32, generation: u32) -> &'static str {
    const PALETTE: [&str; 10] = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
        "#7f7f7f", "#d62728",
    ];
    let mix = family.wrapping_mul(0x9e37_79b9).rotate_left(7) ^ family;
    PALETTE[(mix.wrapping_add(generation) % PALETTE.len() as u32) as usize]
}

/// Where a record is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Lane {
    Proc(ProcId),
    Issuer,
}

/// The lane of record `i`: issues and revocations on the issuer's; a redeem or API use on the
/// lane of the process that made it (as the issuer logged it, else the pool refresh the
/// checkers matched it to), else the issuer's; everything else on its own process's.
fn lane_of(h: &History, requester: &HashMap<usize, usize>, i: usize) -> Lane {
    let r = &h.records[i];
    match &r.ev {
        Ev::Issued { .. } | Ev::FamilyRevoked { .. } | Ev::IssuerRules { .. } => Lane::Issuer,
        Ev::Redeemed { .. } | Ev::Used { .. } if r.proc == 0 => match requester.get(&i) {
            Some(&p) if h.records[p].proc != 0 => Lane::Proc(h.records[p].proc),
            _ => Lane::Issuer,
        },
        _ => Lane::Proc(r.proc),
    }
}

/// The x layout: which records are drawn, where, and the elided stretches.
struct Axis {
    /// x of every record (elided ones at the centre of their gap).
    x: Vec<f64>,
    shown: Vec<bool>,
    /// (x from, x to, first elided, last elided)
    gaps: Vec<(f64, f64, usize, usize)>,
    width: f64,
}

fn visible(n: usize, pivots: &[usize]) -> Vec<bool> {
    if n <= DRAW_ALL {
        return vec![true; n];
    }
    let mut shown = vec![false; n];
    let pivots: Vec<usize> = if pivots.is_empty() {
        vec![0]
    } else {
        pivots.to_vec()
    };
    for &p in &pivots {
        let lo = p.saturating_sub(CONTEXT);
        let hi = (p + CONTEXT).min(n - 1);
        shown[lo..=hi].iter_mut().for_each(|s| *s = true);
    }
    // Fill short holes (and short ends): a gap marker would hide less than it costs.
    let mut i = 0;
    while i < n {
        if shown[i] {
            i += 1;
            continue;
        }
        let j = (i..n).find(|&k| shown[k]).unwrap_or(n);
        if j - i < MIN_GAP {
            shown[i..j].iter_mut().for_each(|s| *s = true);
        }
        i = j;
    }
    shown
}

impl Axis {
    fn new(h: &History, pivots: &[usize]) -> Axis {
        let n = h.records.len();
        let shown = visible(n, pivots);
        let mut x = vec![0.0; n];
        let mut gaps = Vec::new();
        let mut cur = LEFT + 14.0;
        let mut prev: Option<u64> = None;
        let mut i = 0;
        while i < n {
            if shown[i] {
                let t = h.records[i].t_ns;
                if let Some(p) = prev {
                    let dt_us = t.saturating_sub(p) as f64 / 1000.0;
                    cur += 5.0 + (dt_us / 6.0).min(40.0);
                }
                x[i] = cur;
                prev = Some(t);
                i += 1;
            } else {
                let j = (i..n).find(|&k| shown[k]).unwrap_or(n);
                let from = cur + 8.0;
                let to = from + GAP_W;
                let mid = (from + to) / 2.0;
                x[i..j].iter_mut().for_each(|v| *v = mid);
                gaps.push((from, to, i, j - 1));
                cur = to + 8.0;
                prev = None;
                i = j;
            }
        }
        Axis {
            x,
            shown,
            gaps,
            width: cur + RIGHT,
        }
    }
}

use crate::report::xml::escape as esc;

fn op_fill(k: Option<OpKind>) -> &'static str {
    match k {
        Some(OpKind::LoadPool) => "#e8e8e8",
        Some(OpKind::Select) => "#dbe9f6",
        Some(OpKind::MarkExhausted) => "#fde2c8",
        Some(OpKind::AddEntry) => "#d9f0d3",
        Some(OpKind::Remove) => "#f3d3e6",
        Some(OpKind::ResetStatuses) => "#ece2f5",
        None => "#eeeeee",
    }
}

/// Labels of one lane: rows 0-2 above the bar (0 nearest), row 3 under it; each a list of
/// occupied spans.
struct Rows(Vec<Vec<(f64, f64)>>);

impl Rows {
    fn new() -> Rows {
        Rows(vec![Vec::new(); 4])
    }
    /// The first row of `prefer` where `[x0, x1]` is free, taken; `None` when all are busy.
    fn place(&mut self, prefer: &[usize], x0: f64, x1: f64) -> Option<usize> {
        for &k in prefer {
            let row = &mut self.0[k];
            if row.iter().all(|&(a, b)| x1 + 3.0 < a || x0 > b + 3.0) {
                row.push((x0, x1));
                return Some(k);
            }
        }
        None
    }
}

/// An operation's records: (begin, end, ok, kind).
type OpSpan = (Option<usize>, Option<usize>, bool, Option<OpKind>);

/// A mark to draw: its record, lane, shape and label.
struct Mark {
    rec: usize,
    lane: Lane,
    svg: String,
    label: String,
    label_colour: &'static str,
    title: String,
}

/// The timeline of one witness, as a standalone SVG document.
pub fn witness_svg(h: &History, w: &Witness) -> String {
    let events: Vec<usize> = w
        .events
        .iter()
        .copied()
        .filter(|&i| i < h.records.len())
        .collect();
    let title = format!("{}: first witness", w.anomaly);
    draw(h, &events, &w.story, &title)
}

/// Draw `h` with the records `events` numbered 1.. and `story` printed under the lanes.
pub fn draw(h: &History, events: &[usize], story: &[String], title: &str) -> String {
    let axis = Axis::new(h, events);
    let n = h.records.len();
    let requester = crate::check::Index::new(h).requester;
    let lane_of = |i: usize| lane_of(h, &requester, i);

    // Token colours from the ledger.
    let mut colour: HashMap<&str, (u32, u32)> = HashMap::new();
    for r in &h.records {
        if let Ev::Issued {
            family,
            generation,
            refresh,
            access,
            ..
        } = &r.ev
        {
            colour.entry(refresh).or_insert((*family, *generation));
            colour.entry(access).or_insert((*family, *generation));
        }
    }
    let tok_fill = |t: &str| -> &'static str {
        match colour.get(t) {
            Some(&(f, g)) => token_colour(f, g),
            None => "#ffffff",
        }
    };
    let tok_name = |t: &str| -> String {
        match colour.get(t) {
            Some(&(f, g)) => format!("{} (family {f} gen {g})", tok(t)),
            None => format!("{} (never issued)", tok(t)),
        }
    };

    // Lanes: every process with a drawn record, then the issuer.
    let mut lanes: Vec<Lane> = Vec::new();
    for i in 0..n {
        if axis.shown[i] || events.contains(&i) {
            let l = lane_of(i);
            if !lanes.contains(&l) {
                lanes.push(l);
            }
        }
    }
    for p in h.roles.keys() {
        if !lanes.contains(&Lane::Proc(*p)) {
            lanes.push(Lane::Proc(*p));
        }
    }
    if !lanes.contains(&Lane::Issuer) {
        lanes.push(Lane::Issuer);
    }
    lanes.sort();
    let lane_y: BTreeMap<Lane, f64> = lanes
        .iter()
        .enumerate()
        .map(|(k, l)| (*l, TOP + k as f64 * LANE_H))
        .collect();
    let mid = |l: Lane| lane_y[&l] + MID;
    let lanes_bottom = TOP + lanes.len() as f64 * LANE_H;

    // Operation bars.
    let mut ops: BTreeMap<(ProcId, u64), OpSpan> = BTreeMap::new();
    let mut last_of: HashMap<ProcId, usize> = HashMap::new();
    for (i, r) in h.records.iter().enumerate() {
        last_of.insert(r.proc, i);
        if let Ev::Pool { event } = &r.ev {
            match event {
                Event::OpBegin { op, kind } => {
                    let e = ops.entry((r.proc, *op)).or_insert((None, None, true, None));
                    e.0 = Some(i);
                    e.3 = Some(*kind);
                }
                Event::OpEnd { op, ok, .. } => {
                    let e = ops.entry((r.proc, *op)).or_insert((None, None, true, None));
                    e.1 = Some(i);
                    e.2 = *ok;
                }
                _ => {}
            }
        }
    }

    // Marks.
    let mut marks: Vec<Mark> = Vec::new();
    for (i, r) in h.records.iter().enumerate() {
        if !(axis.shown[i] || events.contains(&i)) {
            continue;
        }
        let lane = lane_of(i);
        let (x, y) = (axis.x[i], mid(lane));
        let at = h.at(r.t_ns);
        let who = h.who(r.proc);
        let mut m = Mark {
            rec: i,
            lane,
            svg: String::new(),
            label: String::new(),
            label_colour: "#333",
            title: String::new(),
        };
        match &r.ev {
            Ev::Pool { event } => match event {
                Event::Read {
                    op,
                    hash,
                    outcome,
                    file,
                } => {
                    let bad = !matches!(outcome, ReadOutcome::Parsed);
                    let c = if bad { "#d62728" } else { "#555" };
                    m.svg = format!(
                        "<path d=\"M{:.1},{:.1} l4.5,-8 h-9 z\" fill=\"#fff\" stroke=\"{c}\" stroke-width=\"1.5\"/>",
                        x,
                        y + 4.0
                    );
                    let what = match outcome {
                        ReadOutcome::Parsed => short(hash),
                        ReadOutcome::Missing => "missing".into(),
                        ReadOutcome::Corrupt(_) => format!("{} torn", short(hash)),
                    };
                    m.label = format!("r {what}");
                    if bad {
                        m.label_colour = "#d62728";
                    }
                    let of = file.as_deref().unwrap_or("store");
                    m.title = format!("{at} {who} op {op}: read {of} {what}");
                }
                Event::Write {
                    op, hash, entries, ..
                } => {
                    let mut s = format!(
                        "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"8\" height=\"8\" fill=\"#222\"/>",
                        x - 4.0,
                        y - 4.0
                    );
                    // The refresh tokens the write committed, as colour chips under the bar.
                    let mut held = Vec::new();
                    for (k, e) in entries.iter().filter(|e| e.refresh.is_some()).enumerate() {
                        let t = e.refresh.as_deref().unwrap_or_default();
                        if k < 3 {
                            let _ = write!(
                                s,
                                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"6\" height=\"6\" fill=\"{}\" stroke=\"#222\" stroke-width=\"0.5\"/>",
                                x - 3.0,
                                y + 9.0 + k as f64 * 7.0,
                                tok_fill(t)
                            );
                        }
                        held.push(format!("{} holds {}", e.id, tok_name(t)));
                    }
                    m.svg = s;
                    m.label = format!("w {}", short(hash));
                    m.title = format!("{at} {who} op {op}: wrote store {}", short(hash));
                    if !held.is_empty() {
                        m.title.push_str(&format!(" ({})", held.join(", ")));
                    }
                }
                Event::Refresh {
                    op,
                    token,
                    outcome: RefreshOutcome::Adopted,
                    ..
                } => {
                    m.svg = format!(
                        "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3.5\" fill=\"{}\" stroke=\"#222\" stroke-dasharray=\"2,1\"/>",
                        tok_fill(token)
                    );
                    m.label = "adopt".into();
                    m.title = format!(
                        "{at} {who} op {op}: adopted a peer's rotation of {}",
                        tok_name(token)
                    );
                }
                _ => {}
            },
            Ev::Redeemed { refresh, outcome } => {
                let ok = matches!(outcome, RedeemVerdict::Rotated | RedeemVerdict::Grace);
                let stroke = if ok { "#222" } else { "#d62728" };
                let sw = if ok { 1.0 } else { 2.2 };
                m.svg = format!(
                    "<path d=\"M{x:.1},{:.1} l6,6 l-6,6 l-6,-6 z\" fill=\"{}\" stroke=\"{stroke}\" stroke-width=\"{sw}\"/>",
                    y - 6.0,
                    tok_fill(refresh)
                );
                let verdict = match outcome {
                    RedeemVerdict::Rotated => "rotated",
                    RedeemVerdict::Grace => "grace",
                    RedeemVerdict::Reused => "REUSED",
                    RedeemVerdict::Revoked => "revoked",
                    RedeemVerdict::Unknown => "unknown",
                };
                m.label = format!("redeem {} {verdict}", tok(refresh));
                if !ok {
                    m.label_colour = "#d62728";
                }
                m.title = format!("{at} {who}: redeemed {} -> {verdict}", tok_name(refresh));
            }
            Ev::Used {
                credential,
                outcome,
            } => {
                let ok = matches!(outcome, UseVerdict::Accepted | UseVerdict::RateLimited);
                let stroke = if ok { "#222" } else { "#d62728" };
                let sw = if ok { 1.0 } else { 2.2 };
                m.svg = format!(
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"5\" fill=\"{}\" stroke=\"{stroke}\" stroke-width=\"{sw}\"/>",
                    tok_fill(credential)
                );
                let verdict = match outcome {
                    UseVerdict::Accepted => "ok",
                    UseVerdict::RateLimited => "429",
                    UseVerdict::Expired => "expired",
                    UseVerdict::Revoked => "revoked",
                    UseVerdict::Unknown => "unknown",
                };
                m.label = format!("use {} {verdict}", tok(credential));
                if !ok {
                    m.label_colour = "#d62728";
                }
                m.title = format!(
                    "{at} {who}: API call with {} -> {verdict}",
                    tok_name(credential)
                );
            }
            Ev::Issued {
                family,
                generation,
                refresh,
                access,
                ..
            } => {
                m.svg = format!(
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" rx=\"2\" fill=\"{}\" stroke=\"#222\" stroke-width=\"0.7\"/>",
                    x - 5.0,
                    y - 5.0,
                    token_colour(*family, *generation)
                );
                m.label = format!("f{family}g{generation} {}", tok(refresh));
                m.title = format!(
                    "{at} issued family {family} gen {generation}: refresh {}, access {}",
                    tok(refresh),
                    tok(access)
                );
            }
            Ev::FamilyRevoked { family, cause } => {
                m.svg = format!(
                    "<path d=\"M{:.1},{:.1} l10,10 m0,-10 l-10,10\" stroke=\"#d62728\" stroke-width=\"3\"/>",
                    x - 5.0,
                    y - 5.0
                );
                m.label = format!("revoke f{family}");
                m.label_colour = "#d62728";
                m.title = format!(
                    "{at} revoked family {family} (replay of {}, presented by {who})",
                    tok(cause)
                );
            }
            Ev::FinalStore { hash, outcome } => {
                let (c, what) = match outcome {
                    FinalStore::Parsed { .. } => ("#222", format!("final {}", short(hash))),
                    FinalStore::Missing => ("#d62728", "final: missing".to_string()),
                    FinalStore::Corrupt { .. } => {
                        ("#d62728", format!("final {} corrupt", short(hash)))
                    }
                };
                m.svg = format!(
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"#fff\" stroke=\"{c}\" stroke-width=\"2\"/>",
                    x - 5.0,
                    y - 5.0
                );
                m.label = what.clone();
                m.label_colour = if c == "#222" { "#333" } else { "#d62728" };
                m.title = format!("{at} final check: {what}");
            }
            Ev::ProcExit { status, crashed } => {
                let c = if *crashed { "#d62728" } else { "#999" };
                m.svg = format!(
                    "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"{c}\" stroke-width=\"2\"/>",
                    y - 9.0,
                    y + 9.0
                );
                if *crashed {
                    m.label = format!("crashed ({})", status);
                    m.label_colour = "#d62728";
                }
                m.title = format!("{at} {who} exited: {status}");
            }
            Ev::ExternalWrite { path, refresh } => {
                m.svg = format!(
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"8\" height=\"8\" fill=\"{}\" stroke=\"#222\" stroke-dasharray=\"2,1\"/>",
                    x - 4.0,
                    y - 4.0,
                    tok_fill(refresh)
                );
                m.label = "ext write".into();
                m.title = format!(
                    "{at} {who}: an external CLI wrote {} holding {}",
                    path,
                    tok_name(refresh)
                );
            }
            _ => {}
        }
        if m.svg.is_empty() && events.contains(&i) {
            // A witness record with no mark of its own still gets one to number.
            m.svg = format!("<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"#222\"/>");
            m.title = format!("{at} {who}");
        }
        if !m.svg.is_empty() {
            marks.push(m);
        }
    }

    // Story lines and legend under the lanes.
    let story_top = lanes_bottom + 28.0;
    let story_lines: Vec<String> = story.iter().map(|s| esc(s)).collect();
    let legend_top = story_top + story_lines.len() as f64 * STEP_H + 14.0;
    let story_w = story
        .iter()
        .map(|s| s.chars().count() as f64 * 7.0 + 40.0)
        .fold(0.0, f64::max);
    let width = axis.width.max(story_w + 20.0).max(760.0).ceil();
    let height = (legend_top + 40.0).ceil();

    let mut o = String::with_capacity(64 * 1024);
    let _ = writeln!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"DejaVu Sans Mono, Menlo, Consolas, monospace\" font-size=\"10\">"
    );
    let _ = writeln!(o, "<title>{}</title>", esc(title));
    let _ = writeln!(
        o,
        "<rect x=\"0\" y=\"0\" width=\"{width}\" height=\"{height}\" fill=\"#fff\"/>"
    );
    let _ = writeln!(
        o,
        "<text x=\"10\" y=\"18\" font-size=\"13\" font-weight=\"bold\">{}</text>",
        esc(title)
    );

    // Lane backgrounds and labels.
    for (k, l) in lanes.iter().enumerate() {
        let y = lane_y[l];
        let fill = if k % 2 == 0 { "#fafafa" } else { "#f2f4f7" };
        let _ = writeln!(
            o,
            "<rect class=\"lane\" data-lane=\"{}\" x=\"0\" y=\"{y:.1}\" width=\"{width}\" height=\"{LANE_H}\" fill=\"{fill}\"/>",
            lane_key(*l)
        );
        let (name, sub) = match l {
            Lane::Issuer => ("issuer".to_string(), "ledger".to_string()),
            Lane::Proc(0) => ("harness".to_string(), "setup, final".to_string()),
            Lane::Proc(p) => (format!("p{p}"), h.roles.get(p).cloned().unwrap_or_default()),
        };
        let _ = writeln!(
            o,
            "<text x=\"10\" y=\"{:.1}\" font-size=\"12\" font-weight=\"bold\">{}</text><text x=\"10\" y=\"{:.1}\" fill=\"#666\">{}</text>",
            y + MID,
            esc(&name),
            y + MID + 13.0,
            esc(&sub)
        );
        let _ = writeln!(
            o,
            "<line x1=\"{LEFT}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ccc\"/>",
            y + MID,
            width - 10.0,
            y + MID
        );
    }
    let _ = writeln!(
        o,
        "<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{lanes_bottom}\" stroke=\"#bbb\"/>"
    );

    // Time axis: a tick about every 110 px at the first drawn record past it.
    let mut next_tick = LEFT + 10.0;
    for i in 0..n {
        if !axis.shown[i] || axis.x[i] < next_tick {
            continue;
        }
        let x = axis.x[i];
        let _ = writeln!(
            o,
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{lanes_bottom}\" stroke=\"#e3e3e3\"/><text x=\"{x:.1}\" y=\"{:.1}\" fill=\"#888\" text-anchor=\"middle\">{}</text>",
            TOP - 8.0,
            TOP - 12.0,
            h.at(h.records[i].t_ns)
        );
        next_tick = x + 110.0;
    }

    // Elided stretches.
    for &(from, to, first, last) in &axis.gaps {
        let count = last - first + 1;
        let dt = h.records[last].t_ns.saturating_sub(h.records[first].t_ns) as f64 / 1e6;
        let _ = writeln!(
            o,
            "<g class=\"gap\"><title>{count} events elided ({} to {})</title><rect x=\"{from:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#e9e9e9\" stroke=\"#999\" stroke-dasharray=\"4,3\"/>",
            h.at(h.records[first].t_ns),
            h.at(h.records[last].t_ns),
            TOP - 4.0,
            to - from,
            lanes_bottom - TOP + 4.0
        );
        // Zigzag break lines.
        for xx in [from + 6.0, to - 6.0] {
            let mut d = format!("M{xx:.1},{:.1}", TOP - 4.0);
            let mut y = TOP - 4.0;
            let mut k = 0;
            while y < lanes_bottom {
                y += 6.0;
                let dx = if k % 2 == 0 { 3.0 } else { -3.0 };
                let _ = write!(d, " L{:.1},{y:.1}", xx + dx);
                k += 1;
            }
            let _ = write!(
                o,
                "<path d=\"{d}\" fill=\"none\" stroke=\"#888\" stroke-width=\"1\"/>"
            );
        }
        let cx = (from + to) / 2.0;
        let _ = writeln!(
            o,
            "<text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\" font-size=\"9\">{count} ev</text><text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\" font-size=\"9\">{dt:.1}ms</text></g>",
            TOP + 10.0,
            TOP + 21.0
        );
    }

    // Operation bars, with their labels placed first in each lane (clear of the write chips).
    let mut rows: HashMap<Lane, Rows> = lanes.iter().map(|l| (*l, Rows::new())).collect();
    for m in &marks {
        if let Ev::Pool {
            event: Event::Write { .. },
        } = &h.records[m.rec].ev
        {
            let x = axis.x[m.rec];
            if let Some(r) = rows.get_mut(&m.lane) {
                r.0[3].push((x - 4.0, x + 4.0));
            }
        }
    }
    for (&(proc, op), &(b, e, ok, kind)) in &ops {
        let first = b.or(e).unwrap_or(0);
        let end = e.or_else(|| last_of.get(&proc).copied()).unwrap_or(first);
        let (x0, x1) = (axis.x[b.unwrap_or(first)], axis.x[end]);
        // Bars wholly inside one gap are not drawn.
        if !axis.shown[first] && !axis.shown[end] && x0 == x1 {
            continue;
        }
        let lane = Lane::Proc(proc);
        let y = mid(lane);
        let stroke = if ok { "#8a9bb0" } else { "#d62728" };
        let sw = if ok { 1.0 } else { 2.2 };
        let kname = kind.map(op_kind_name).unwrap_or("op");
        let status = if e.is_none() {
            "never ended"
        } else if ok {
            "ok"
        } else {
            "FAILED"
        };
        let _ = writeln!(
            o,
            "<g class=\"op\"><title>p{proc} op {op} {kname}: {status}</title><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"12\" rx=\"3\" fill=\"{}\" stroke=\"{stroke}\" stroke-width=\"{sw}\"/></g>",
            x0 - 3.0,
            y - 6.0,
            (x1 - x0 + 6.0).max(6.0),
            op_fill(kind)
        );
        let label = if ok || e.is_none() {
            format!("{op}:{kname}")
        } else {
            format!("{op}:{kname} failed")
        };
        let lw = label.len() as f64 * 5.5;
        let c = if ok { "#4a5b70" } else { "#d62728" };
        // The label goes under the bar's start, else above it, if either is free.
        let r = rows.get_mut(&lane).expect("lane");
        let at_y = match r.place(&[3, 0], x0, x0 + lw) {
            Some(3) => Some(y + 17.0),
            Some(_) => Some(y - 9.0),
            None => None,
        };
        if let Some(ly) = at_y {
            let _ = writeln!(
                o,
                "<text x=\"{x0:.1}\" y=\"{ly:.1}\" fill=\"{c}\" font-size=\"9\">{}</text>",
                esc(&label)
            );
        }
    }

    // Highlights behind the witness marks, and the path from step to step.
    let pos = |i: usize| (axis.x[i], mid(lane_of(i)));
    if events.len() > 1 {
        let pts: Vec<String> = events
            .iter()
            .map(|&i| {
                let (x, y) = pos(i);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = writeln!(
            o,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"#e6550d\" stroke-width=\"1.5\" stroke-dasharray=\"5,3\" opacity=\"0.7\"/>",
            pts.join(" ")
        );
    }
    for &i in events {
        let (x, y) = pos(i);
        let _ = writeln!(
            o,
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"11\" fill=\"#ffd54f\" fill-opacity=\"0.75\" stroke=\"#e6550d\" stroke-width=\"1.5\"/>"
        );
    }

    // Marks; witness labels are placed before the others so they always show.
    let order: Vec<usize> = {
        let mut v: Vec<usize> = (0..marks.len()).collect();
        v.sort_by_key(|&k| (!events.contains(&marks[k].rec), k));
        v
    };
    let mut labels = String::new();
    for k in order {
        let m = &marks[k];
        if m.label.is_empty() {
            continue;
        }
        let lw = m.label.len() as f64 * CHAR_W;
        // Centred on its mark, but kept inside the picture.
        let x = axis.x[m.rec].min(width - 6.0 - lw / 2.0);
        let (x0, x1) = (x - lw / 2.0, x + lw / 2.0);
        let r = rows.get_mut(&m.lane).expect("lane");
        // Row 0 is shared with the op labels; marks prefer the rows above.
        let Some(row) = r.place(&[1, 2, 0], x0, x1) else {
            continue;
        };
        let y = mid(m.lane) - 9.0 - row as f64 * 12.0;
        let weight = if events.contains(&m.rec) {
            " font-weight=\"bold\""
        } else {
            ""
        };
        let _ = writeln!(
            labels,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"middle\" fill=\"{}\"{weight}>{}</text>",
            m.label_colour,
            esc(&m.label)
        );
    }
    for m in &marks {
        let _ = writeln!(
            o,
            "<g class=\"mark\" data-rec=\"{}\"><title>{}</title>{}</g>",
            m.rec,
            esc(&m.title),
            m.svg
        );
    }
    o.push_str(&labels);

    // Step numbers on top of everything in the lanes.
    for (k, &i) in events.iter().enumerate() {
        let (x, y) = pos(i);
        let (bx, by) = (x + 12.0, y + 13.0);
        let _ = writeln!(
            o,
            "<g class=\"step\" data-step=\"{}\" data-rec=\"{i}\"><circle cx=\"{bx:.1}\" cy=\"{by:.1}\" r=\"7.5\" fill=\"#e6550d\"/><text x=\"{bx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#fff\" font-weight=\"bold\">{}</text></g>",
            k + 1,
            by + 3.5,
            k + 1
        );
    }

    // The story.
    for (k, line) in story_lines.iter().enumerate() {
        let y = story_top + k as f64 * STEP_H;
        let _ = writeln!(
            o,
            "<text class=\"story\" x=\"12\" y=\"{y:.1}\" font-size=\"11\">{line}</text>"
        );
    }

    // Legend: token colours seen, then shapes.
    let mut fams: Vec<(u32, u32)> = colour.values().copied().collect();
    fams.sort();
    fams.dedup();
    let mut x = 12.0;
    let ly = legend_top;
    let _ = write!(
        o,
        "<text x=\"{x}\" y=\"{:.1}\" fill=\"#555\">tokens:</text>",
        ly + 9.0
    );
    x += 56.0;
    for (f, g) in fams.iter().take(16) {
        let _ = write!(
            o,
            "<rect x=\"{x:.1}\" y=\"{ly:.1}\" width=\"10\" height=\"10\" rx=\"2\" fill=\"{}\" stroke=\"#222\" stroke-width=\"0.7\"/><text x=\"{:.1}\" y=\"{:.1}\">f{f}g{g}</text>",
            token_colour(*f, *g),
            x + 13.0,
            ly + 9.0
        );
        x += 56.0;
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "<text x=\"12\" y=\"{:.1}\" fill=\"#555\">bar = pool operation (red outline: failed)   \u{25bd} read   \u{25a0} write (chips: refresh tokens it holds)   \u{25c6} redeem   \u{25cf} API use   \u{2716} family revoked   red = refused</text>",
        ly + 26.0
    );
    o.push_str("</svg>\n");
    o
}

fn lane_key(l: Lane) -> String {
    match l {
        Lane::Issuer => "issuer".into(),
        Lane::Proc(p) => format!("p{p}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::*;
    use crate::check::{self};

    fn parse(svg: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not well-formed ({e})"))
    }

    fn count(doc: &roxmltree::Document<'_>, class: &str) -> usize {
        doc.descendants()
            .filter(|n| n.attribute("class") == Some(class))
            .count()
    }

    /// 5,000 operations by four processes, a double redeem in the middle: the timeline keeps to
    /// the witness's neighbourhood, elides the rest with marked gaps, and stays narrow.
    #[test]
    fn five_thousand_ops_are_windowed_around_the_witness() {
        let r0 = tag(1);
        let r1 = tag(2);
        let mut b = HistoryBuilder::new()
            .role(1, "cli")
            .role(2, "cli")
            .role(3, "gateway")
            .role(4, "cli")
            .issued(1, 0, &r0, &tag(101))
            .init(&[oauth("aaaaaa", &r0)]);
        let mut hash = "h0".to_string();
        for n in 0..5000u64 {
            let p = (n % 4) as u32 + 1;
            let op = n / 4 + 1;
            b = b.op(p, op, OpKind::Select).read(p, op, &hash);
            if n == 2500 {
                b = b
                    .redeemed(&r0, RedeemVerdict::Rotated)
                    .issued(1, 1, &r1, &tag(102))
                    .refresh(p, op, "aaaaaa", &r0, RefreshOutcome::Rotated);
            }
            if n == 2501 {
                b = b
                    .redeemed(&r0, RedeemVerdict::Reused)
                    .revoked(1, &r0)
                    .refresh(p, op, "aaaaaa", &r0, RefreshOutcome::Refused);
            }
            let next = format!("h{}", n + 1);
            b = b.write(p, op, &next, Some(&hash), &[oauth("aaaaaa", &r0)]);
            hash = next;
            b = b.at(
                p,
                Ev::Pool {
                    event: Event::OpEnd {
                        op,
                        ok: true,
                        error: None,
                    },
                },
            );
        }
        let h = b.build();
        assert!(h.records.len() > 20_000);
        let v = check::check(&h);
        assert_eq!(v.counts["double_redeem"], 1, "{:?}", v.counts);
        let svgs = render(&h, &v);
        let (_, svg) = svgs
            .iter()
            .find(|(a, _)| a == "double_redeem")
            .expect("a double_redeem timeline");
        if let Ok(dir) = std::env::var("POOLCHECK_TIMELINE_OUT") {
            std::fs::write(format!("{dir}/synthetic-5000.svg"), svg).unwrap();
        }
        let doc = parse(svg);
        let root = doc.root_element();
        let width: f64 = root.attribute("width").unwrap().parse().unwrap();
        assert!(width < 4000.0, "width {width}");
        assert!(svg.len() < 200_000, "{} bytes", svg.len());
        // Elided before and after the witness, each gap saying how much it hides.
        assert_eq!(count(&doc, "gap"), 2, "two gaps");
        let hidden: usize = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("gap"))
            .filter_map(|n| n.children().find(|c| c.has_tag_name("title")))
            .map(|t| {
                let text = t.text().unwrap();
                assert!(text.contains("events elided"), "{text}");
                text.split(' ').next().unwrap().parse::<usize>().unwrap()
            })
            .sum();
        let marks = count(&doc, "mark");
        assert!(marks < 300, "{marks} marks drawn");
        assert!(hidden > 19_000, "{hidden} hidden");
        // Every witness step is drawn and numbered on its own record.
        let w = v
            .witnesses
            .iter()
            .find(|w| w.anomaly == "double_redeem")
            .unwrap();
        let steps: Vec<usize> = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("step"))
            .map(|n| n.attribute("data-rec").unwrap().parse().unwrap())
            .collect();
        assert_eq!(steps, w.events);
        for e in &w.events {
            assert!(doc
                .descendants()
                .any(|n| n.attribute("class") == Some("mark")
                    && n.attribute("data-rec") == Some(e.to_string().as_str())));
        }
    }

    #[test]
    fn a_short_history_is_drawn_whole() {
        let r0 = tag(1);
        let h = HistoryBuilder::new()
            .issued(1, 0, &r0, &tag(101))
            .init(&[oauth("aaaaaa", &r0)])
            .op(1, 1, OpKind::Select)
            .read(1, 1, "h0")
            .redeemed(&r0, RedeemVerdict::Rotated)
            .redeemed(&r0, RedeemVerdict::Reused)
            .build();
        let v = check::check(&h);
        let svgs = render(&h, &v);
        assert_eq!(svgs.len(), v.witnesses.len());
        let doc = parse(&svgs[0].1);
        assert_eq!(count(&doc, "gap"), 0);
        // Ledger records of the harness's own process go on the issuer lane.
        let lanes: Vec<&str> = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("lane"))
            .filter_map(|n| n.attribute("data-lane"))
            .collect();
        assert_eq!(lanes, ["p0", "p1", "issuer"]);
    }

    #[test]
    fn text_is_escaped_and_token_colours_are_stable() {
        assert_eq!(esc("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
        assert_eq!(token_colour(3, 1), token_colour(3, 1));
        for f in 0..20 {
            for g in 0..20 {
                assert_ne!(token_colour(f, g), token_colour(f, g + 1), "f{f} g{g}");
            }
        }
        let firsts: std::collections::BTreeSet<&str> = (0..4).map(|f| token_colour(f, 0)).collect();
        assert!(firsts.len() >= 3, "{firsts:?}");
    }
}
