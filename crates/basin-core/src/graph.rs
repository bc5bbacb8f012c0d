//! The asset graph: every asset and what it reads. Cycle detection, dependency order and the
//! walks that selection needs (`+x` ancestors, `x+` descendants).

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::Bfs;

use crate::asset::AssetKey;

/// What selection needs to know about an asset.
#[derive(Debug, Clone)]
pub struct AssetNode {
    pub key: AssetKey,
    pub tags: Vec<String>,
    /// The source a bronze asset is ingested from.
    pub source: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AssetGraph {
    graph: DiGraph<AssetNode, ()>,
    index: HashMap<AssetKey, NodeIndex>,
}

impl AssetGraph {
    /// Build from nodes and `(upstream, downstream)` edges; edges naming unknown assets are
    /// ignored (validation reports those references with their place in the SQL).
    pub fn new(
        nodes: impl IntoIterator<Item = AssetNode>,
        edges: impl IntoIterator<Item = (AssetKey, AssetKey)>,
    ) -> Self {
        let mut graph = DiGraph::new();
        let mut index = HashMap::new();
        for node in nodes {
            let key = node.key.clone();
            index.entry(key).or_insert_with(|| graph.add_node(node));
        }
        for (up, down) in edges {
            if let (Some(&u), Some(&d)) = (index.get(&up), index.get(&down)) {
                graph.update_edge(u, d, ());
            }
        }
        AssetGraph { graph, index }
    }

    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    pub fn contains(&self, key: &AssetKey) -> bool {
        self.index.contains_key(key)
    }

    pub fn node(&self, key: &AssetKey) -> Option<&AssetNode> {
        self.index.get(key).map(|&i| &self.graph[i])
    }

    pub fn nodes(&self) -> impl Iterator<Item = &AssetNode> {
        self.graph.node_weights()
    }

    pub fn keys(&self) -> impl Iterator<Item = &AssetKey> {
        self.graph.node_weights().map(|n| &n.key)
    }

    /// Assets `key` reads directly.
    pub fn upstream(&self, key: &AssetKey) -> Vec<&AssetKey> {
        self.neighbours(key, Direction::Incoming)
    }

    /// Assets that read `key` directly.
    pub fn downstream(&self, key: &AssetKey) -> Vec<&AssetKey> {
        self.neighbours(key, Direction::Outgoing)
    }

    fn neighbours(&self, key: &AssetKey, dir: Direction) -> Vec<&AssetKey> {
        let Some(&i) = self.index.get(key) else { return Vec::new() };
        let mut out: Vec<&AssetKey> = self.graph.neighbors_directed(i, dir).map(|n| &self.graph[n].key).collect();
        out.sort();
        out
    }

    /// `key` and everything it depends on, transitively.
    pub fn with_ancestors(&self, key: &AssetKey) -> Vec<&AssetKey> {
        self.reach(key, Direction::Incoming)
    }

    /// `key` and everything that depends on it, transitively.
    pub fn with_descendants(&self, key: &AssetKey) -> Vec<&AssetKey> {
        self.reach(key, Direction::Outgoing)
    }

    fn reach(&self, key: &AssetKey, dir: Direction) -> Vec<&AssetKey> {
        let Some(&start) = self.index.get(key) else { return Vec::new() };
        let mut out = Vec::new();
        match dir {
            Direction::Outgoing => {
                let mut bfs = Bfs::new(&self.graph, start);
                while let Some(n) = bfs.next(&self.graph) {
                    out.push(&self.graph[n].key);
                }
            }
            Direction::Incoming => {
                let reversed = petgraph::visit::Reversed(&self.graph);
                let mut bfs = Bfs::new(reversed, start);
                while let Some(n) = bfs.next(reversed) {
                    out.push(&self.graph[n].key);
                }
            }
        }
        out
    }

    /// Every dependency cycle, each as the path `a → b → … → a` (first key repeated at the
    /// end), starting from its smallest key so the report is stable.
    pub fn cycles(&self) -> Vec<Vec<AssetKey>> {
        let mut cycles = Vec::new();
        for scc in petgraph::algo::tarjan_scc(&self.graph) {
            let self_loop = scc.len() == 1 && self.graph.contains_edge(scc[0], scc[0]);
            if scc.len() < 2 && !self_loop {
                continue;
            }
            let members: BTreeSet<NodeIndex> = scc.iter().copied().collect();
            let start = *scc.iter().min_by_key(|&&n| &self.graph[n].key).expect("non-empty");
            cycles.push(self.cycle_through(start, &members));
        }
        cycles.sort();
        cycles
    }

    /// A shortest path from `start` back to itself inside one strongly connected component.
    fn cycle_through(&self, start: NodeIndex, members: &BTreeSet<NodeIndex>) -> Vec<AssetKey> {
        let mut prev: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        'search: while let Some(n) = queue.pop_front() {
            let mut next: Vec<NodeIndex> = self.graph.neighbors(n).filter(|m| members.contains(m)).collect();
            next.sort_by_key(|&m| &self.graph[m].key);
            for m in next {
                if m == start {
                    prev.insert(start, n);
                    break 'search;
                }
                if let std::collections::hash_map::Entry::Vacant(e) = prev.entry(m) {
                    e.insert(n);
                    queue.push_back(m);
                }
            }
        }
        let mut path = vec![self.graph[start].key.clone()];
        let mut at = prev[&start];
        while at != start {
            path.push(self.graph[at].key.clone());
            at = prev[&at];
        }
        path.push(self.graph[start].key.clone());
        let last = path.len() - 1;
        path[1..last].reverse();
        path
    }

    /// The given assets in dependency order (upstream first; ties by key). Assets on a cycle
    /// are left out: validation refuses such a project before anything runs.
    pub fn order<'a>(&'a self, keys: impl IntoIterator<Item = &'a AssetKey>) -> Vec<&'a AssetKey> {
        let chosen: BTreeSet<NodeIndex> = keys.into_iter().filter_map(|k| self.index.get(k).copied()).collect();
        let mut waiting: HashMap<NodeIndex, usize> = chosen
            .iter()
            .map(|&n| (n, self.graph.neighbors_directed(n, Direction::Incoming).filter(|u| chosen.contains(u)).count()))
            .collect();
        let mut ready: BinaryHeap<Reverse<(&AssetKey, NodeIndex)>> =
            waiting.iter().filter(|(_, c)| **c == 0).map(|(&n, _)| Reverse((&self.graph[n].key, n))).collect();
        let mut out = Vec::with_capacity(chosen.len());
        while let Some(Reverse((key, n))) = ready.pop() {
            out.push(key);
            for d in self.graph.neighbors_directed(n, Direction::Outgoing) {
                if let Some(c) = waiting.get_mut(&d) {
                    *c -= 1;
                    if *c == 0 {
                        ready.push(Reverse((&self.graph[d].key, d)));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> AssetKey {
        AssetKey::parse(s).unwrap()
    }

    fn graph(edges: &[(&str, &str)]) -> AssetGraph {
        let mut keys: BTreeSet<&str> = BTreeSet::new();
        for (a, b) in edges {
            keys.insert(a);
            keys.insert(b);
        }
        AssetGraph::new(
            keys.iter().map(|s| AssetNode { key: k(s), tags: vec![], source: None }),
            edges.iter().map(|(a, b)| (k(a), k(b))),
        )
    }

    #[test]
    fn orders_upstream_first() {
        let g = graph(&[("s.c", "g.x"), ("s.a", "s.c"), ("s.b", "s.c")]);
        let order: Vec<String> = g.order(g.keys()).iter().map(|k| k.to_string()).collect();
        assert_eq!(order, vec!["s.a", "s.b", "s.c", "g.x"]);
    }

    #[test]
    fn reports_cycles_as_paths() {
        let g = graph(&[("s.a", "s.b"), ("s.b", "s.c"), ("s.c", "s.a"), ("s.c", "g.x")]);
        let cycles = g.cycles();
        assert_eq!(cycles.len(), 1);
        let path: Vec<String> = cycles[0].iter().map(|k| k.to_string()).collect();
        assert_eq!(path, vec!["s.a", "s.b", "s.c", "s.a"]);
        let g = graph(&[("s.a", "s.a")]);
        assert_eq!(g.cycles()[0].len(), 2);
    }

    #[test]
    fn ancestors_and_descendants() {
        let g = graph(&[("s.a", "s.b"), ("s.b", "s.c"), ("s.x", "s.c")]);
        let mut up: Vec<String> = g.with_ancestors(&k("s.c")).iter().map(|k| k.to_string()).collect();
        up.sort();
        assert_eq!(up, vec!["s.a", "s.b", "s.c", "s.x"]);
        let mut down: Vec<String> = g.with_descendants(&k("s.a")).iter().map(|k| k.to_string()).collect();
        down.sort();
        assert_eq!(down, vec!["s.a", "s.b", "s.c"]);
    }
}
