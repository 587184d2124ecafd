//! The non-executing pickle walker on arbitrary bytes: never panic, never hang, stay within the
//! op and node budgets, and every value it reports is a valid index into its arena. The same
//! bytes are also inspected as a bare `.pt` (the path that names globals of bare pickles).
#![no_main]

use byom_core::torch::pickle::{walk, Node, WalkLimits};
use byom_core::Settings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = WalkLimits { max_ops: 100_000, max_nodes: 100_000 };
    let p = walk(data, limits);
    assert!(p.nodes.len() as u64 <= limits.max_nodes);
    assert!(p.consumed <= data.len());
    let n = p.nodes.len() as u32;
    if let Some(root) = p.root {
        assert!(root < n);
    }
    for node in &p.nodes {
        match node {
            Node::Tuple(v) | Node::List(v) | Node::Set(v) => assert!(v.iter().all(|&i| i < n)),
            Node::Dict(v) => assert!(v.iter().all(|&(a, b)| a < n && b < n)),
            Node::PersId(i) => assert!(*i < n),
            Node::Obj(o) => assert!(o.func < n && o.args < n && o.state.is_none_or(|s| s < n)),
            _ => {}
        }
    }
    let _ = byom_core::torch::inspect_bytes(data, &Settings::default(), "model.pt");
});
