#include "graph/dag.h"

#include <algorithm>
#include <functional>
#include <queue>

namespace sdflow {

Dag::Dag(const Workflow& workflow) : workflow_(workflow), deps_(workflow.nodes.size()) {
  for (size_t i = 0; i < workflow.nodes.size(); ++i) index_.emplace(workflow.nodes[i].id, i);
  for (size_t i = 0; i < workflow.nodes.size(); ++i) {
    const auto& inputs = workflow.nodes[i].inputs;
    if (!inputs.is_object()) continue;
    for (const auto& [name, value] : inputs.items()) {
      auto link = parse_link(value);
      if (!link) continue;
      auto src = index_of(link->node_id);
      if (!src) continue;
      auto& d = deps_[i];
      if (std::find(d.begin(), d.end(), *src) == d.end()) d.push_back(*src);
    }
  }
}

std::optional<size_t> Dag::index_of(const std::string& id) const {
  auto it = index_.find(id);
  if (it == index_.end()) return std::nullopt;
  return it->second;
}

std::vector<bool> Dag::upstream_closure(const std::vector<size_t>& roots) const {
  std::vector<bool> seen(size(), false);
  std::vector<size_t> stack;  // explicit: long chains must not exhaust the call stack
  for (size_t r : roots) {
    if (r >= size() || seen[r]) continue;
    seen[r] = true;
    stack.push_back(r);
    while (!stack.empty()) {
      size_t n = stack.back();
      stack.pop_back();
      for (size_t d : deps_[n]) {
        if (!seen[d]) {
          seen[d] = true;
          stack.push_back(d);
        }
      }
    }
  }
  return seen;
}

std::vector<std::vector<size_t>> Dag::cycles(const std::vector<bool>& within) const {
  // Tarjan's strongly connected components, iterative.
  constexpr size_t kUnvisited = static_cast<size_t>(-1);
  std::vector<size_t> index(size(), kUnvisited), low(size(), 0);
  std::vector<bool> on_stack(size(), false);
  std::vector<size_t> scc_stack;
  std::vector<std::vector<size_t>> out;
  size_t counter = 0;

  struct Frame {
    size_t node;
    size_t next_dep;
  };
  std::vector<Frame> call;
  for (size_t root = 0; root < size(); ++root) {
    if (!within[root] || index[root] != kUnvisited) continue;
    call.push_back({root, 0});
    index[root] = low[root] = counter++;
    scc_stack.push_back(root);
    on_stack[root] = true;
    while (!call.empty()) {
      Frame& f = call.back();
      const auto& d = deps_[f.node];
      if (f.next_dep < d.size()) {
        size_t w = d[f.next_dep++];
        if (!within[w]) continue;
        if (index[w] == kUnvisited) {
          index[w] = low[w] = counter++;
          scc_stack.push_back(w);
          on_stack[w] = true;
          call.push_back({w, 0});
        } else if (on_stack[w]) {
          low[f.node] = std::min(low[f.node], index[w]);
        }
        continue;
      }
      size_t v = f.node;
      call.pop_back();
      if (!call.empty()) low[call.back().node] = std::min(low[call.back().node], low[v]);
      if (low[v] != index[v]) continue;
      std::vector<size_t> comp;
      size_t w;
      do {
        w = scc_stack.back();
        scc_stack.pop_back();
        on_stack[w] = false;
        comp.push_back(w);
      } while (w != v);
      bool self_loop = std::find(deps_[v].begin(), deps_[v].end(), v) != deps_[v].end();
      if (comp.size() > 1 || self_loop) {
        std::sort(comp.begin(), comp.end());
        out.push_back(std::move(comp));
      }
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.front() < b.front(); });
  return out;
}

std::optional<std::vector<size_t>> Dag::topo_order(const std::vector<bool>& within) const {
  std::vector<size_t> pending(size(), 0);
  std::vector<std::vector<size_t>> consumers(size());
  size_t total = 0;
  for (size_t i = 0; i < size(); ++i) {
    if (!within[i]) continue;
    ++total;
    for (size_t d : deps_[i]) {
      if (!within[d]) continue;
      ++pending[i];
      consumers[d].push_back(i);
    }
  }
  std::priority_queue<size_t, std::vector<size_t>, std::greater<size_t>> ready;
  for (size_t i = 0; i < size(); ++i)
    if (within[i] && pending[i] == 0) ready.push(i);
  std::vector<size_t> order;
  order.reserve(total);
  while (!ready.empty()) {
    size_t n = ready.top();
    ready.pop();
    order.push_back(n);
    for (size_t c : consumers[n])
      if (--pending[c] == 0) ready.push(c);
  }
  if (order.size() != total) return std::nullopt;
  return order;
}

}  // namespace sdflow
