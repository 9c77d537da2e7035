#include "workflow/ui_format.h"

#include <algorithm>
#include <ctime>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "core/error.h"
#include "workflow/api_format.h"

// Note [UI conversion]
// The ComfyUI frontend never sends its graph to the backend; at queue time it builds an API
// prompt from it. We redo that offline, following the frontend's observable behaviour:
//  * Nodes that only exist in the frontend (Reroute, PrimitiveNode, Note, ...) and nodes that
//    are muted (mode 2) or bypassed (mode 4) are not emitted.
//  * widgets_values is positional: walking the schema's inputs in order, every widget input
//    takes the next value. A widget with control_after_generate is followed by the control
//    value ("randomize", ...; `true` in very old files), which is skipped (for a combo, also
//    the filter-list value after it). Files from old
//    frontends also carry that value after an INT named seed/noise_seed whose schema lacks the
//    flag; there we skip it only when it looks like one. The upload button of image_upload
//    combos (LoadImage) is stored after all the other widgets, so walking in order never
//    consumes it. A widget converted to an input keeps its slot, and a link to it wins.
//    Files saved before a node gained inputs have fewer values: the rest take schema defaults
//    (the frontend fills them in the same way when it loads such a file).
//  * A link is followed upstream through pass-through nodes (Reroute: output k forwards input
//    k) and through bypassed nodes, where the frontend takes the first input whose type equals
//    the type of the input being resolved, trying the input at the link's origin slot first.
//    When no input matches, the frontend still emits the link to the bypassed node and then
//    drops it with all other links to nodes absent from the prompt; the input ends up unset.
//    A matching but unconnected input leaves the target's widget value in place.
//  * A PrimitiveNode writes its value into the widget it feeds before the prompt is built, so
//    its widgets_values[0] becomes the target's constant.
//  * Dynamic prompts: the frontend replaces {a|b|c} in multiline STRING widgets that have
//    dynamicPrompts with a random choice at queue time, so ComfyUI's backend never sees the
//    braces. We keep the text literally: a choice made here would be a different random draw
//    from ComfyUI's, so results could not match anyway, and keeping the text keeps runs
//    reproducible. Workflows that rely on the syntax need an explicit API-format prompt.
//  * filename_prefix values get the frontend's queue-time substitutions (%date:yyyy-MM-dd%,
//    %Node.widget%); the backend only knows %year% and friends.
//  * Subgraphs (definitions.subgraphs, an instance node's type is the subgraph id) are
//    flattened the way the frontend does it: inner nodes get "<instance id>:<inner id>" ids,
//    links to the subgraph's input node (-10) continue at the instance's inputs, links from an
//    instance continue at whatever feeds the subgraph's output node (-20). Values of widgets
//    promoted onto the instance (properties.proxyWidgets, or widget inputs of the instance)
//    override the inner values. A muted or bypassed instance behaves like any other node.

namespace sdflow {

namespace {

constexpr int64_t kModeNever = 2;
constexpr int64_t kModeBypass = 4;
constexpr int kMaxSubgraphDepth = 32;
constexpr const char* kSubgraphInputNode = "-10";
constexpr int64_t kSubgraphOutputNodeId = -20;

enum class Kind {
  kNode,         // sent to the backend (whether or not the registry knows the class)
  kPassThrough,  // output slot k forwards input slot k (Reroute, subgraph plumbing)
  kPrimitive,    // its first widget value becomes the constant of what it feeds
  kInert,        // nothing flows out (Note, and frontend helpers that only toggle modes)
};

const std::map<std::string, Kind>& frontend_types() {
  static const std::map<std::string, Kind> types = {
      {"Reroute", Kind::kPassThrough},
      {"Reroute (rgthree)", Kind::kPassThrough},
      {"SetNode", Kind::kPassThrough},  // KJNodes; GetNode is resolved to its SetNode's input
      {"GetNode", Kind::kPassThrough},
      {"PrimitiveNode", Kind::kPrimitive},
      {"Note", Kind::kInert},
      {"MarkdownNote", Kind::kInert},
      {"Note Plus (mtb)", Kind::kInert},
      {"Label (rgthree)", Kind::kInert},
      {"Bookmark (rgthree)", Kind::kInert},
      {"Fast Groups Bypasser (rgthree)", Kind::kInert},
      {"Fast Groups Muter (rgthree)", Kind::kInert},
      {"Fast Bypasser (rgthree)", Kind::kInert},
      {"Fast Muter (rgthree)", Kind::kInert},
      {"Fast Actions Button (rgthree)", Kind::kInert},
  };
  return types;
}

struct UiInput {
  std::string name;
  nlohmann::json type;
  std::string link;      // key into UiGraph::links; empty when unconnected
  nlohmann::json value;  // subgraph plumbing only: a promoted widget value when unconnected
};

struct UiNode {
  std::string id;
  std::string type;
  int64_t mode = 0;
  std::optional<std::string> title;
  Kind kind = Kind::kNode;
  std::vector<UiInput> inputs;  // positional: link slots index into it
  nlohmann::json widgets_values;
  nlohmann::json widget_overrides = nlohmann::json::object();  // from subgraph proxy widgets
  std::string search_name;  // properties["Node name for S&R"], used by %Node.widget% tokens
};

struct UiLink {
  std::string origin;
  int64_t origin_slot = 0;
};

struct UiGraph {
  std::vector<UiNode> nodes;
  std::unordered_map<std::string, size_t> by_id;
  std::unordered_map<std::string, UiLink> links;
};

// litegraph ids are numbers, sometimes strings; the API uses their decimal text.
std::optional<std::string> id_text(const nlohmann::json& v) {
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (d == static_cast<double>(static_cast<int64_t>(d))) return std::to_string(static_cast<int64_t>(d));
    return std::nullopt;
  }
  if (v.is_string()) return v.get<std::string>();
  return std::nullopt;
}

std::optional<int64_t> int_of(const nlohmann::json& v) {
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) return static_cast<int64_t>(v.get<double>());
  if (v.is_string()) {
    try {
      size_t used = 0;
      int64_t x = std::stoll(v.get<std::string>(), &used);
      if (used == v.get<std::string>().size()) return x;
    } catch (const std::exception&) {
    }
  }
  return std::nullopt;
}

std::string string_or_empty(const nlohmann::json& obj, const char* key) {
  if (!obj.is_object()) return "";
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : "";
}

const nlohmann::json& member_or_null(const nlohmann::json& obj, const char* key) {
  static const nlohmann::json null_value;
  if (!obj.is_object()) return null_value;
  auto it = obj.find(key);
  return it == obj.end() ? null_value : *it;
}

bool is_control_value(const nlohmann::json& v) {
  if (!v.is_string()) return false;
  const auto& s = v.get_ref<const std::string&>();
  return s == "fixed" || s == "increment" || s == "decrement" || s == "randomize";
}

struct ParsedLink {
  std::string id;
  nlohmann::json origin, target;
  int64_t origin_slot = 0, target_slot = 0;
};

// [id, origin, origin_slot, target, target_slot, type] (0.4) or the same as an object (1).
std::optional<ParsedLink> parse_ui_link(const nlohmann::json& l) {
  ParsedLink p;
  std::optional<std::string> id;
  std::optional<int64_t> oslot, tslot;
  if (l.is_array() && l.size() >= 5) {
    id = id_text(l[0]);
    p.origin = l[1];
    oslot = int_of(l[2]);
    p.target = l[3];
    tslot = int_of(l[4]);
  } else if (l.is_object()) {
    id = id_text(member_or_null(l, "id"));
    p.origin = member_or_null(l, "origin_id");
    oslot = int_of(member_or_null(l, "origin_slot"));
    p.target = member_or_null(l, "target_id");
    tslot = int_of(member_or_null(l, "target_slot"));
  }
  if (!id || !oslot || !tslot) return std::nullopt;
  p.id = *id;
  p.origin_slot = *oslot;
  p.target_slot = *tslot;
  return p;
}

class Flattener {
 public:
  Flattener(const nlohmann::json& root, const NodeRegistry& registry) : registry_(registry) {
    collect_definitions(root, 0);
  }

  UiGraph run(const nlohmann::json& root) {
    add_scope(member_or_null(root, "nodes"), member_or_null(root, "links"), "", 0);
    return std::move(graph_);
  }

 private:
  void collect_definitions(const nlohmann::json& holder, int depth) {
    if (depth > kMaxSubgraphDepth) return;
    const auto& subgraphs = member_or_null(member_or_null(holder, "definitions"), "subgraphs");
    if (!subgraphs.is_array()) return;
    for (const auto& sg : subgraphs) {
      std::string id = string_or_empty(sg, "id");
      if (id.empty()) continue;
      definitions_.emplace(id, &sg);
      collect_definitions(sg, depth + 1);
    }
  }

  // Adds one graph level; returns, per output slot of the subgraph (for inner levels), the link
  // that feeds the subgraph's output node.
  std::map<int64_t, std::string> add_scope(const nlohmann::json& nodes, const nlohmann::json& links,
                                           const std::string& prefix, int depth) {
    std::map<int64_t, std::string> outputs;
    if (links.is_array()) {
      for (const auto& l : links) {
        auto p = parse_ui_link(l);
        if (!p) continue;  // an unusable link leaves its target unconnected
        auto origin = id_text(p->origin);
        if (!origin) continue;
        graph_.links[prefix + p->id] = UiLink{prefix + *origin, p->origin_slot};
        if (int_of(p->target) == kSubgraphOutputNodeId) outputs[p->target_slot] = prefix + p->id;
      }
    }
    if (!nodes.is_array()) return outputs;
    size_t first = graph_.nodes.size();
    for (size_t i = 0; i < nodes.size(); ++i) add_node(nodes[i], i, prefix, depth);
    resolve_get_nodes(first);
    return outputs;
  }

  void add_node(const nlohmann::json& n, size_t index, const std::string& prefix, int depth) {
    std::string where = prefix.empty() ? "" : " of subgraph node " + prefix.substr(0, prefix.size() - 1);
    if (!n.is_object())
      throw Error(ErrorKind::kValidation,
                  "nodes[" + std::to_string(index) + "]" + where + " is not an object");
    auto raw_id = id_text(member_or_null(n, "id"));
    if (!raw_id)
      throw Error(ErrorKind::kValidation,
                  "nodes[" + std::to_string(index) + "]" + where + " has no usable id");
    UiNode node;
    node.id = prefix + *raw_id;
    node.type = string_or_empty(n, "type");
    node.mode = int_of(member_or_null(n, "mode")).value_or(0);
    const auto& title = member_or_null(n, "title");
    if (title.is_string()) node.title = title.get<std::string>();
    node.widgets_values = member_or_null(n, "widgets_values");
    node.search_name = string_or_empty(member_or_null(n, "properties"), "Node name for S&R");
    node.inputs = parse_inputs(member_or_null(n, "inputs"), prefix);

    const bool known = registry_.find(node.type) != nullptr;
    auto def = known ? definitions_.end() : definitions_.find(node.type);
    if (def != definitions_.end() && node.mode != kModeNever && node.mode != kModeBypass) {
      add_subgraph_instance(std::move(node), n, *def->second, depth);
      return;
    }
    if (!known) {
      auto ft = frontend_types().find(node.type);
      if (ft != frontend_types().end()) node.kind = ft->second;
    }
    insert(std::move(node));
  }

  std::vector<UiInput> parse_inputs(const nlohmann::json& inputs, const std::string& prefix) {
    std::vector<UiInput> out;
    if (!inputs.is_array()) return out;
    for (const auto& in : inputs) {
      UiInput slot;  // kept even when malformed: links address inputs by position
      slot.name = string_or_empty(in, "name");
      if (slot.name.empty()) slot.name = string_or_empty(member_or_null(in, "widget"), "name");
      slot.type = member_or_null(in, "type");
      if (auto link = id_text(member_or_null(in, "link"))) slot.link = prefix + *link;
      out.push_back(std::move(slot));
    }
    return out;
  }

  void insert(UiNode node) {
    if (graph_.by_id.count(node.id)) throw Error(ErrorKind::kValidation, "duplicate node id " + node.id);
    graph_.by_id.emplace(node.id, graph_.nodes.size());
    graph_.nodes.push_back(std::move(node));
  }

  // GetNode forwards the input of the SetNode with the same name (widgets_values[0]).
  void resolve_get_nodes(size_t first) {
    std::map<std::string, size_t> setters;
    for (size_t i = first; i < graph_.nodes.size(); ++i) {
      const UiNode& n = graph_.nodes[i];
      if (n.kind == Kind::kPassThrough && n.type == "SetNode" && n.widgets_values.is_array() &&
          !n.widgets_values.empty() && n.widgets_values[0].is_string())
        setters.emplace(n.widgets_values[0].get<std::string>(), i);
    }
    for (size_t i = first; i < graph_.nodes.size(); ++i) {
      UiNode& n = graph_.nodes[i];
      if (n.kind != Kind::kPassThrough || n.type != "GetNode") continue;
      n.inputs.clear();
      n.kind = Kind::kInert;
      if (!n.widgets_values.is_array() || n.widgets_values.empty() || !n.widgets_values[0].is_string())
        continue;
      auto s = setters.find(n.widgets_values[0].get<std::string>());
      if (s == setters.end()) continue;
      n.inputs = graph_.nodes[s->second].inputs;
      n.kind = Kind::kPassThrough;
    }
  }

  void add_subgraph_instance(UiNode instance, const nlohmann::json& raw, const nlohmann::json& def,
                             int depth) {
    const std::string def_id = instance.type;
    const std::string label = "subgraph node " + instance.id + " (" + def_id + ")";
    if (depth >= kMaxSubgraphDepth || std::find(stack_.begin(), stack_.end(), def_id) != stack_.end())
      throw Error(ErrorKind::kValidation, label + " contains itself");
    const std::string inner = instance.id + ":";
    const auto& def_inputs = member_or_null(def, "inputs");
    const auto& def_outputs = member_or_null(def, "outputs");

    // The subgraph's input node forwards, per subgraph input, the instance's matching input.
    UiNode input_node;
    input_node.id = inner + kSubgraphInputNode;
    input_node.kind = Kind::kPassThrough;
    std::vector<std::string> input_names;
    if (def_inputs.is_array()) {
      for (size_t k = 0; k < def_inputs.size(); ++k) {
        std::string name = string_or_empty(def_inputs[k], "name");
        input_names.push_back(name);
        const UiInput* match = nullptr;
        for (const auto& in : instance.inputs)
          if (!name.empty() && in.name == name) {
            match = &in;
            break;
          }
        if (!match && k < instance.inputs.size()) match = &instance.inputs[k];
        input_node.inputs.push_back(match ? *match : UiInput{});
      }
    }

    stack_.push_back(def_id);
    auto outputs = add_scope(member_or_null(def, "nodes"), member_or_null(def, "links"), inner, depth + 1);
    stack_.pop_back();

    apply_promoted_widgets(instance, raw, label, inner, input_names, input_node);
    insert(std::move(input_node));

    // The instance itself forwards, per subgraph output, what feeds the output node.
    UiNode through;
    through.id = instance.id;
    through.type = def_id;
    through.kind = Kind::kPassThrough;
    size_t n_out = def_outputs.is_array() ? def_outputs.size() : 0;
    if (!outputs.empty()) n_out = std::max<size_t>(n_out, static_cast<size_t>(outputs.rbegin()->first) + 1);
    through.inputs.resize(n_out);
    for (const auto& [slot, link] : outputs)
      if (slot >= 0) through.inputs[static_cast<size_t>(slot)].link = link;
    insert(std::move(through));
  }

  void apply_promoted_widgets(const UiNode& instance, const nlohmann::json& raw, const std::string& label,
                              const std::string& inner, const std::vector<std::string>& input_names,
                              UiNode& input_node) {
    const auto& values = instance.widgets_values;
    if (!values.is_array() || values.empty()) return;
    auto set_input_value = [&](const std::string& name, const nlohmann::json& value) {
      for (size_t k = 0; k < input_names.size(); ++k)
        if (input_names[k] == name) input_node.inputs[k].value = value;
    };
    const auto& proxies = member_or_null(member_or_null(raw, "properties"), "proxyWidgets");
    if (proxies.is_array() && proxies.size() == values.size()) {
      for (size_t i = 0; i < proxies.size(); ++i) {
        const auto& p = proxies[i];
        if (!p.is_array() || p.size() < 2 || !p[1].is_string()) continue;
        auto source = id_text(p[0]);
        const std::string widget = p[1].get<std::string>();
        if (!source) continue;
        if (*source == "-1") {
          set_input_value(widget, values[i]);
          continue;
        }
        auto it = graph_.by_id.find(inner + *source);
        if (it != graph_.by_id.end()) graph_.nodes[it->second].widget_overrides[widget] = values[i];
      }
      return;
    }
    // Older frontends: one value per widget input of the instance, in order.
    std::vector<std::string> widget_inputs;
    const auto& raw_inputs = member_or_null(raw, "inputs");
    if (raw_inputs.is_array())
      for (size_t k = 0; k < raw_inputs.size() && k < instance.inputs.size(); ++k)
        if (member_or_null(raw_inputs[k], "widget").is_object())
          widget_inputs.push_back(instance.inputs[k].name);
    if (widget_inputs.size() != values.size())
      throw Error(ErrorKind::kValidation,
                  label + ": cannot tell which of its " + std::to_string(values.size()) +
                      " widget values belong to which input; subgraphs saved this way are not supported");
    for (size_t i = 0; i < values.size(); ++i) set_input_value(widget_inputs[i], values[i]);
  }

  const NodeRegistry& registry_;
  std::map<std::string, const nlohmann::json*> definitions_;
  std::vector<std::string> stack_;
  UiGraph graph_;
};

struct Resolved {
  enum What { kNothing, kLink, kConstant } what = kNothing;
  std::string origin;
  int64_t slot = 0;
  nlohmann::json value;
};

Resolved resolve_input(const UiGraph& g, const UiInput& target) {
  Resolved r;
  std::string link_key = target.link;
  std::unordered_set<std::string> seen;
  while (true) {
    auto l = g.links.find(link_key);
    if (l == g.links.end()) return r;
    auto idx = g.by_id.find(l->second.origin);
    if (idx == g.by_id.end()) return r;
    const UiNode& n = g.nodes[idx->second];
    const int64_t slot = l->second.origin_slot;
    if (!seen.insert(n.id).second) return r;  // a loop of reroutes or bypassed nodes
    switch (n.kind) {
      case Kind::kInert:
        return r;
      case Kind::kPrimitive:
        if (n.widgets_values.is_array() && !n.widgets_values.empty()) {
          r.what = Resolved::kConstant;
          r.value = n.widgets_values[0];
        }
        return r;
      case Kind::kPassThrough: {
        if (slot < 0 || static_cast<size_t>(slot) >= n.inputs.size()) return r;
        const UiInput& in = n.inputs[static_cast<size_t>(slot)];
        if (!in.link.empty()) {
          link_key = in.link;
          continue;
        }
        if (!in.value.is_null()) {
          r.what = Resolved::kConstant;
          r.value = in.value;
        }
        return r;
      }
      case Kind::kNode:
        break;
    }
    if (n.mode == kModeBypass) {
      std::vector<size_t> order;
      if (slot >= 0 && static_cast<size_t>(slot) < n.inputs.size())
        order.push_back(static_cast<size_t>(slot));
      for (size_t i = 0; i < n.inputs.size(); ++i) order.push_back(i);
      const UiInput* match = nullptr;
      for (size_t i : order)
        if (n.inputs[i].type == target.type) {
          match = &n.inputs[i];
          break;
        }
      if (match) {
        if (match->link.empty()) return r;
        link_key = match->link;
        continue;
      }
    }
    r.what = Resolved::kLink;
    r.origin = n.id;
    r.slot = slot;
    return r;
  }
}

void map_widgets(const NodeSchema& schema, const nlohmann::json& values, nlohmann::json& inputs) {
  if (values.is_object()) {
    for (const auto& spec : schema.inputs) {
      if (!spec.is_widget()) continue;
      auto it = values.find(spec.name);
      if (it != values.end())
        inputs[spec.name] = *it;
      else if (!spec.default_value.is_null())
        inputs[spec.name] = spec.default_value;
    }
    return;
  }
  const size_t n = values.is_array() ? values.size() : 0;
  size_t i = 0;
  for (const auto& spec : schema.inputs) {
    if (!spec.is_widget()) continue;
    if (i < n)
      inputs[spec.name] = values[i++];
    else if (!spec.default_value.is_null())
      inputs[spec.name] = spec.default_value;
    if (i >= n) continue;
    if (spec.control_after_generate) {
      // Combos also get a filter-list text widget after the control mode.
      i += spec.type == kCombo ? 2 : 1;
    } else if (spec.type == kInt && (spec.name == "seed" || spec.name == "noise_seed") &&
               is_control_value(values[i])) {
      ++i;
    }
  }
}

// How JavaScript's String() prints a JSON scalar, as the frontend does when it pastes a widget
// value into a filename.
std::string js_text(const nlohmann::json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (d == static_cast<double>(static_cast<int64_t>(d))) return std::to_string(static_cast<int64_t>(d));
  }
  return v.dump();
}

std::string format_date(const std::string& format, const std::tm& now) {
  std::string out;
  for (size_t i = 0; i < format.size();) {
    const char c = format[i];
    size_t run = 1;
    while (i + run < format.size() && format[i + run] == c) ++run;
    if (c == 'y' && run >= 2) {
      size_t take = std::min<size_t>(run, 4);
      std::string year = std::to_string(now.tm_year + 1900);
      if (take == 2)
        out += year.substr(year.size() - 2);
      else if (take == 4)
        out += year;
      else
        out += std::string(take, 'y');
      i += take;
      continue;
    }
    int value = -1;
    switch (c) {
      case 'd':
        value = now.tm_mday;
        break;
      case 'M':
        value = now.tm_mon + 1;
        break;
      case 'h':
        value = now.tm_hour;
        break;
      case 'm':
        value = now.tm_min;
        break;
      case 's':
        value = now.tm_sec;
        break;
      default:
        break;
    }
    if (value < 0) {
      out += c;
      ++i;
      continue;
    }
    size_t take = std::min<size_t>(run, 2);
    std::string digits = std::to_string(value);
    if (digits.size() < take) digits.insert(0, take - digits.size(), '0');
    out += digits;
    i += take;
  }
  return out;
}

// A widget value of any node of the graph, for %Node.widget%: the node is found by its
// "Node name for S&R" property, else by its title, as the frontend does.
std::optional<nlohmann::json> graph_widget_value(const UiGraph& g, const NodeRegistry& registry,
                                                 const std::string& node_name, const std::string& widget) {
  const UiNode* found = nullptr;
  for (const auto& n : g.nodes)
    if (n.search_name == node_name) {
      found = &n;
      break;
    }
  if (!found) {
    for (const auto& n : g.nodes) {
      const NodeSchema* s = registry.find(n.type);
      std::string title = n.title ? *n.title
                          : s     ? (s->display_name.empty() ? s->class_type : s->display_name)
                                  : n.type;
      if (title == node_name) {
        found = &n;
        break;
      }
    }
  }
  if (!found) return std::nullopt;
  if (found->kind == Kind::kPrimitive && widget == "value" && found->widgets_values.is_array() &&
      !found->widgets_values.empty())
    return found->widgets_values[0];
  const NodeSchema* schema = registry.find(found->type);
  if (!schema) return std::nullopt;
  nlohmann::json values = nlohmann::json::object();
  map_widgets(*schema, found->widgets_values, values);
  auto it = values.find(widget);
  if (it == values.end()) return std::nullopt;
  return *it;
}

}  // namespace

std::string expand_frontend_tokens(const std::string& text, const std::tm& now,
                                   const WidgetLookup& widget_value) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    size_t open = text.find('%', i);
    if (open == std::string::npos) break;
    size_t close = text.find('%', open + 1);
    if (close == std::string::npos) break;
    out += text.substr(i, open - i);
    if (close == open + 1) {  // "%%": the second '%' may open a token
      out += '%';
      i = open + 1;
      continue;
    }
    const std::string token = text.substr(open + 1, close - open - 1);
    std::string replacement = text.substr(open, close - open + 1);
    if (token.rfind("date:", 0) == 0) {
      replacement = format_date(token.substr(5), now);
    } else if (std::count(token.begin(), token.end(), '.') == 1 && widget_value) {
      const size_t dot = token.find('.');
      if (auto v = widget_value(token.substr(0, dot), token.substr(dot + 1))) {
        replacement = js_text(*v);
        std::replace(replacement.begin(), replacement.end(), '/', '_');
        std::replace(replacement.begin(), replacement.end(), '\\', '_');
      }
    }
    out += replacement;
    i = close + 1;
  }
  out += text.substr(i);
  return out;
}

bool is_frontend_only_type(const std::string& type) { return frontend_types().count(type) > 0; }

bool is_ui_graph(const nlohmann::json& doc) {
  return doc.is_object() && doc.contains("nodes") && doc["nodes"].is_array();
}

bool is_ui_graph(const nlohmann::ordered_json& doc) {
  return doc.is_object() && doc.contains("nodes") && doc["nodes"].is_array();
}

Workflow workflow_from_ui(const nlohmann::json& graph, const NodeRegistry& registry) {
  if (!graph.is_object())
    throw Error(ErrorKind::kValidation,
                std::string("a UI-format workflow must be a JSON object, got ") + graph.type_name());
  if (!is_ui_graph(graph))
    throw Error(ErrorKind::kValidation, "a UI-format workflow needs a \"nodes\" array");

  UiGraph g = Flattener(graph, registry).run(graph);

  std::vector<std::string> ids;
  for (const auto& n : g.nodes)
    if (n.kind == Kind::kNode && n.mode != kModeNever && n.mode != kModeBypass) ids.push_back(n.id);
  sort_ids_like_javascript(ids);
  const std::set<std::string> emitted(ids.begin(), ids.end());

  Workflow wf;
  wf.nodes.reserve(ids.size());
  for (const auto& id : ids) {
    const UiNode& n = g.nodes[g.by_id.at(id)];
    WorkflowNode out;
    out.id = n.id;
    out.class_type = n.type;
    const NodeSchema* schema = registry.find(n.type);
    if (n.title)
      out.title = *n.title;
    else if (schema)
      out.title = schema->display_name.empty() ? schema->class_type : schema->display_name;
    if (schema)
      map_widgets(*schema, n.widgets_values, out.inputs);
    else if (!n.widgets_values.is_null() && !n.widgets_values.empty())
      out.unmapped_widget_values = n.widgets_values;
    for (const auto& [name, value] : n.widget_overrides.items()) out.inputs[name] = value;

    for (const auto& in : n.inputs) {
      if (in.link.empty() || in.name.empty()) continue;
      Resolved r = resolve_input(g, in);
      if (r.what == Resolved::kConstant) {
        out.inputs[in.name] = r.value;
      } else if (r.what == Resolved::kLink) {
        // A link to a node that is not emitted (muted, or a bypassed node without a matching
        // input) removes the input altogether, widget value included, as in the frontend.
        if (emitted.count(r.origin))
          out.inputs[in.name] = nlohmann::json::array({r.origin, r.slot});
        else
          out.inputs.erase(in.name);
      }
    }
    wf.nodes.push_back(std::move(out));
  }
  // The frontend expands %date:...% and %Node.widget% in filename_prefix when it queues.
  const std::time_t t = std::time(nullptr);
  std::tm now{};
  localtime_r(&t, &now);
  WidgetLookup lookup = [&](const std::string& node, const std::string& widget) {
    return graph_widget_value(g, registry, node, widget);
  };
  for (auto& n : wf.nodes) {
    auto it = n.inputs.find("filename_prefix");
    if (it != n.inputs.end() && it->is_string() &&
        it->get_ref<const std::string&>().find('%') != std::string::npos)
      *it = expand_frontend_tokens(it->get<std::string>(), now, lookup);
  }
  wf.ui_graph = graph;
  return wf;
}

}  // namespace sdflow
