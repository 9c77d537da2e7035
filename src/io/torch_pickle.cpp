// Note [Safe pickles]
// A pickle is a program for a stack machine whose GLOBAL and REDUCE opcodes import and call any
// Python callable, which is why ComfyUI's safe_load (torch.load(weights_only=True)) and sdflow
// refuse arbitrary pickles. torch.save of a state dict only ever needs: OrderedDict() for the
// dicts and the empty backward-hook dicts, _rebuild_tensor_v2 for each tensor (storage, offset,
// size, stride, requires_grad, hooks[, metadata]), _rebuild_parameter for nn.Parameters, and the
// typed storage classes, which appear only inside persistent ids ('storage', type, key, location,
// numel) that name a file of the zip's data/ folder. This interpreter knows those and nothing
// else: it refuses any other global at the GLOBAL opcode, before anything could be called, and it
// never calls anything at all. Values only grow from input bytes (each push consumes at least one
// byte, memo gets share), containers are frozen once nested (so no cycles) and nesting is
// capped, so hostile input costs at most linear memory and cannot recurse deeply.
#include "io/torch_pickle.h"

#include <cstring>
#include <map>
#include <unordered_map>

#include "core/error.h"

namespace sdflow {

namespace {

using Kind = PickleValue::Kind;

enum class Callable { kNone, kOrderedDict, kRebuildTensorV2, kRebuildParameter, kStorageType };

struct GlobalInfo {
  Callable callable;
  DType dtype;  // storage types only
};

const std::map<std::string, GlobalInfo>& allowed_globals() {
  static const std::map<std::string, GlobalInfo> globals = {
      {"collections.OrderedDict", {Callable::kOrderedDict, DType::F32}},
      {"torch._utils._rebuild_tensor_v2", {Callable::kRebuildTensorV2, DType::F32}},
      {"torch._utils._rebuild_parameter", {Callable::kRebuildParameter, DType::F32}},
      {"torch._utils._rebuild_parameter_with_state", {Callable::kRebuildParameter, DType::F32}},
      {"torch.DoubleStorage", {Callable::kStorageType, DType::F64}},
      {"torch.FloatStorage", {Callable::kStorageType, DType::F32}},
      {"torch.HalfStorage", {Callable::kStorageType, DType::F16}},
      {"torch.BFloat16Storage", {Callable::kStorageType, DType::BF16}},
      {"torch.Float8_e4m3fnStorage", {Callable::kStorageType, DType::F8_E4M3}},
      {"torch.Float8_e5m2Storage", {Callable::kStorageType, DType::F8_E5M2}},
      {"torch.LongStorage", {Callable::kStorageType, DType::I64}},
      {"torch.IntStorage", {Callable::kStorageType, DType::I32}},
      {"torch.ShortStorage", {Callable::kStorageType, DType::I16}},
      {"torch.CharStorage", {Callable::kStorageType, DType::I8}},
      {"torch.ByteStorage", {Callable::kStorageType, DType::U8}},
      {"torch.BoolStorage", {Callable::kStorageType, DType::BOOL}},
  };
  return globals;
}

class Machine {
 public:
  Machine(const uint8_t* data, size_t size, const std::string& label) : p_(data), end_(data + size), begin_(data), label_(label) {}

  PickleRef run() {
    for (;;) {
      op_at_ = static_cast<size_t>(p_ - begin_);
      const uint8_t op = u8();
      switch (op) {
        case 0x80: u8(); break;              // PROTO
        case 0x95: bytes(8); break;          // FRAME: a length hint only
        case '.': return stop();             // STOP
        case '(': marks_.push_back(stack_.size()); break;  // MARK
        case ')': push(container(Kind::kTuple)); break;    // EMPTY_TUPLE
        case ']': push(container(Kind::kList)); break;     // EMPTY_LIST
        case '}': push(container(Kind::kDict)); break;     // EMPTY_DICT
        case 't': push(tuple_of(pop_mark())); break;       // TUPLE
        case 0x85: case 0x86: case 0x87: {                 // TUPLE1..3
          const size_t n = op - 0x84u;
          need(n);
          std::vector<PickleRef> items(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
          stack_.resize(stack_.size() - n);
          push(tuple_of(std::move(items)));
          break;
        }
        case 'l': {  // LIST
          PickleRef list = container(Kind::kList);
          for (PickleRef& v : pop_mark()) add_child(*list, v, [&] { list->items.push_back(v); });
          push(list);
          break;
        }
        case 'd': {  // DICT
          PickleRef dict = container(Kind::kDict);
          set_items(*dict, pop_mark());
          push(dict);
          break;
        }
        case 'a': {  // APPEND
          PickleRef v = pop();
          append(*top(), {v});
          break;
        }
        case 'e': {  // APPENDS (target first: argument order is unspecified)
          PickleRef list = top_below_mark();
          append(*list, pop_mark());
          break;
        }
        case 's': {                                              // SETITEM
          PickleRef v = pop(), k = pop();
          set_items(*top(), {k, v});
          break;
        }
        case 'u': {  // SETITEMS
          PickleRef dict = top_below_mark();
          set_items(*dict, pop_mark());
          break;
        }
        case 'N': push(std::make_shared<PickleValue>()); break;     // NONE
        case 0x88: case 0x89: {                                     // NEWTRUE / NEWFALSE
          auto v = leaf(Kind::kBool);
          v->b = op == 0x88;
          push(v);
          break;
        }
        case 'J': push(integer(static_cast<int32_t>(le(4)))); break;  // BININT
        case 'K': push(integer(u8())); break;                        // BININT1
        case 'M': push(integer(static_cast<int64_t>(le(2)))); break;  // BININT2
        case 0x8a: push(long_int(u8())); break;                      // LONG1
        case 0x8b: push(long_int(le(4))); break;                     // LONG4
        case 'G': {                                                  // BINFLOAT (big-endian)
          const uint8_t* b = bytes(8);
          uint64_t bits = 0;
          for (int k = 0; k < 8; ++k) bits = (bits << 8) | b[k];
          auto v = leaf(Kind::kFloat);
          std::memcpy(&v->f, &bits, sizeof bits);
          push(v);
          break;
        }
        case 'X': push(text(Kind::kString, le(4))); break;     // BINUNICODE
        case 0x8c: push(text(Kind::kString, u8())); break;     // SHORT_BINUNICODE
        case 0x8d: push(text(Kind::kString, le(8))); break;    // BINUNICODE8
        case 'T': push(text(Kind::kString, le(4))); break;     // BINSTRING (py2 str)
        case 'U': push(text(Kind::kString, u8())); break;      // SHORT_BINSTRING
        case 'B': push(text(Kind::kBytes, le(4))); break;      // BINBYTES
        case 'C': push(text(Kind::kBytes, u8())); break;       // SHORT_BINBYTES
        case 0x8e: push(text(Kind::kBytes, le(8))); break;     // BINBYTES8
        case 'q': memo_[static_cast<uint32_t>(u8())] = top(); break;   // BINPUT
        case 'r': memo_[static_cast<uint32_t>(le(4))] = top(); break;  // LONG_BINPUT
        case 0x94: {                                                   // MEMOIZE
          const auto index = static_cast<uint32_t>(memo_.size());
          memo_[index] = top();
          break;
        }
        case 'h': push(memo(u8())); break;   // BINGET
        case 'j': push(memo(le(4))); break;  // LONG_BINGET
        case '0': pop(); break;              // POP
        case '1': pop_mark(); break;         // POP_MARK
        case '2': push(top()); break;        // DUP
        case 'c': {                          // GLOBAL: "module\nname\n"
          std::string module = line();
          std::string name = line();
          push(global(module + "." + name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          PickleRef name = pop(), module = pop();
          if (name->kind != Kind::kString || module->kind != Kind::kString) fail("STACK_GLOBAL needs two strings");
          push(global(module->s + "." + name->s));
          break;
        }
        case 'R': {  // REDUCE
          PickleRef args = pop(), fn = pop();
          push(reduce(*fn, *args));
          break;
        }
        case 'b': {  // BUILD: state for the object below; dicts and tensors keep none we need
          PickleRef state = pop();
          const Kind k = top()->kind;
          if (k != Kind::kDict && k != Kind::kTensor) fail(std::string("BUILD on a ") + top()->kind_name());
          break;
        }
        case 'Q': push(persistent(*pop())); break;  // BINPERSID
        default: {
          char hex[8];
          std::snprintf(hex, sizeof hex, "0x%02x", op);
          fail(std::string("unsupported pickle opcode ") + hex +
               " (only what torch.save writes for tensors is read)");
        }
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(ErrorKind::kFormat, label_ + ": data.pkl at byte " + std::to_string(op_at_) + ": " + what);
  }

  const uint8_t* bytes(uint64_t n) {
    if (n > static_cast<uint64_t>(end_ - p_)) fail("truncated");
    const uint8_t* b = p_;
    p_ += n;
    return b;
  }
  uint8_t u8() { return *bytes(1); }
  uint64_t le(int n) {
    const uint8_t* b = bytes(static_cast<uint64_t>(n));
    uint64_t v = 0;
    for (int k = n - 1; k >= 0; --k) v = (v << 8) | b[k];
    return v;
  }
  std::string line() {
    const void* nl = std::memchr(p_, '\n', static_cast<size_t>(end_ - p_));
    if (!nl) fail("unterminated GLOBAL");
    std::string s(reinterpret_cast<const char*>(p_), static_cast<const uint8_t*>(nl) - p_);
    p_ = static_cast<const uint8_t*>(nl) + 1;
    return s;
  }

  static PickleRef leaf(Kind kind) {
    auto v = std::make_shared<PickleValue>();
    v->kind = kind;
    return v;
  }
  static PickleRef container(Kind kind) {
    PickleRef v = leaf(kind);
    v->depth = 1;
    return v;
  }
  static PickleRef integer(int64_t i) {
    PickleRef v = leaf(Kind::kInt);
    v->i = i;
    return v;
  }
  PickleRef long_int(uint64_t n) {
    if (n > 8) fail("integer wider than 64 bits");
    const uint8_t* b = bytes(n);
    uint64_t v = 0;
    for (uint64_t k = n; k-- > 0;) v = (v << 8) | b[k];
    if (n > 0 && n < 8 && (b[n - 1] & 0x80)) v |= ~uint64_t{0} << (8 * n);  // sign-extend
    return integer(static_cast<int64_t>(v));
  }
  PickleRef text(Kind kind, uint64_t n) {
    const uint8_t* b = bytes(n);
    PickleRef v = leaf(kind);
    v->s.assign(reinterpret_cast<const char*>(b), static_cast<size_t>(n));
    return v;
  }

  void push(PickleRef v) { stack_.push_back(std::move(v)); }
  void need(size_t n) const {
    const size_t floor = marks_.empty() ? 0 : marks_.back();
    if (stack_.size() < floor + n) fail("stack underflow");
  }
  PickleRef pop() {
    need(1);
    PickleRef v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  const PickleRef& top() const {
    need(1);
    return stack_.back();
  }
  std::vector<PickleRef> pop_mark() {
    if (marks_.empty()) fail("no MARK");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<PickleRef> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  // The object an APPENDS/SETITEMS adds to: the one just below the topmost mark.
  PickleRef top_below_mark() const {
    if (marks_.empty()) fail("no MARK");
    const size_t m = marks_.back();
    const size_t floor = marks_.size() > 1 ? marks_[marks_.size() - 2] : 0;
    if (m == 0 || m - 1 < floor) fail("stack underflow");
    return stack_[m - 1];
  }
  PickleRef memo(uint64_t index) const {
    auto it = memo_.find(static_cast<uint32_t>(index));
    if (index > UINT32_MAX || it == memo_.end()) fail("memo entry " + std::to_string(index) + " was never stored");
    return it->second;
  }

  // Puts `child` into `parent` (through `insert`), freezing the child; refuses cycles and depth.
  template <typename Insert>
  void add_child(PickleValue& parent, const PickleRef& child, Insert insert) {
    if (child.get() == &parent) fail("a container inside itself");
    if (child->depth + 1 > kMaxPickleDepth) fail("nesting deeper than " + std::to_string(kMaxPickleDepth));
    child->nested = true;
    parent.depth = std::max(parent.depth, child->depth + 1);
    insert();
  }
  PickleRef tuple_of(std::vector<PickleRef> items) {
    PickleRef t = container(Kind::kTuple);
    for (const PickleRef& v : items) add_child(*t, v, [] {});
    t->items = std::move(items);
    return t;
  }
  void append(PickleValue& list, const std::vector<PickleRef>& values) {
    if (list.kind != Kind::kList) fail(std::string("APPEND to a ") + list.kind_name());
    if (list.nested) fail("APPEND to a list that is already inside another container");
    for (const PickleRef& v : values) add_child(list, v, [&] { list.items.push_back(v); });
  }
  void set_items(PickleValue& dict, const std::vector<PickleRef>& kv) {
    if (dict.kind != Kind::kDict) fail(std::string("SETITEM on a ") + dict.kind_name());
    if (dict.nested) fail("SETITEM on a dict that is already inside another container");
    if (kv.size() % 2 != 0) fail("SETITEMS with an odd number of values");
    for (size_t k = 0; k < kv.size(); k += 2) {
      add_child(dict, kv[k], [] {});
      add_child(dict, kv[k + 1], [&] { dict.dict.emplace_back(kv[k], kv[k + 1]); });
    }
  }

  PickleRef global(const std::string& name) {
    auto it = allowed_globals().find(name);
    if (it == allowed_globals().end())
      throw Error(ErrorKind::kModel, label_ + ": the pickle refers to '" + name +
                                         "', which is not part of a plain tensor checkpoint; refusing to load it "
                                         "(unpickling it could run code)");
    PickleRef v = leaf(Kind::kGlobal);
    v->s = name;
    return v;
  }

  PickleRef persistent(const PickleValue& pid) {
    // ('storage', <storage type>, key, location, numel)
    if (pid.kind != Kind::kTuple || pid.items.size() != 5 || pid.items[0]->kind != Kind::kString ||
        pid.items[0]->s != "storage")
      fail("persistent id is not a ('storage', type, key, location, numel) tuple");
    const PickleValue& type = *pid.items[1];
    const PickleValue& key = *pid.items[2];
    const PickleValue& numel = *pid.items[4];
    if (type.kind != Kind::kGlobal || allowed_globals().at(type.s).callable != Callable::kStorageType)
      fail("persistent id names no storage type");
    if (key.kind != Kind::kString || key.s.empty() || key.s.find('/') != std::string::npos)
      fail("persistent id has a bad storage key");
    if (numel.kind != Kind::kInt || numel.i < 0) fail("persistent id has a bad element count");
    auto info = std::make_shared<PickleTensor>();
    info->storage_key = key.s;
    info->dtype = allowed_globals().at(type.s).dtype;
    info->storage_numel = static_cast<uint64_t>(numel.i);
    PickleRef v = leaf(Kind::kStorage);
    v->s = key.s;
    v->tensor = std::move(info);
    return v;
  }

  static bool int_tuple(const PickleValue& v, std::vector<int64_t>& out) {
    if (v.kind != Kind::kTuple) return false;
    out.clear();
    for (const PickleRef& x : v.items) {
      if (x->kind != Kind::kInt) return false;
      out.push_back(x->i);
    }
    return true;
  }

  PickleRef reduce(const PickleValue& fn, const PickleValue& args) {
    if (fn.kind != Kind::kGlobal) fail(std::string("REDUCE calls a ") + fn.kind_name());
    if (args.kind != Kind::kTuple) fail("REDUCE arguments are not a tuple");
    switch (allowed_globals().at(fn.s).callable) {
      case Callable::kOrderedDict:
        if (!args.items.empty()) fail("OrderedDict() with arguments");
        return container(Kind::kDict);
      case Callable::kRebuildTensorV2: {
        const auto& a = args.items;
        if (a.size() < 4 || a.size() > 7 || a[0]->kind != Kind::kStorage || a[1]->kind != Kind::kInt)
          fail("_rebuild_tensor_v2 arguments are not (storage, offset, size, stride, ...)");
        auto t = std::make_shared<PickleTensor>(*a[0]->tensor);
        t->offset = a[1]->i;
        if (!int_tuple(*a[2], t->sizes) || !int_tuple(*a[3], t->strides) || t->sizes.size() != t->strides.size())
          fail("_rebuild_tensor_v2 size and stride are not int tuples of one length");
        PickleRef v = leaf(Kind::kTensor);
        v->tensor = std::move(t);
        return v;
      }
      case Callable::kRebuildParameter:
        if (args.items.empty() || args.items[0]->kind != Kind::kTensor) fail("_rebuild_parameter without a tensor");
        return args.items[0];
      case Callable::kStorageType:
      case Callable::kNone:
        break;
    }
    fail("'" + fn.s + "' cannot be called");
  }

  PickleRef stop() {
    if (!marks_.empty() || stack_.size() != 1) fail("STOP with " + std::to_string(stack_.size()) + " values on the stack");
    return stack_.back();
  }

  const uint8_t* p_;
  const uint8_t* end_;
  const uint8_t* begin_;
  const std::string& label_;
  size_t op_at_ = 0;
  std::vector<PickleRef> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint32_t, PickleRef> memo_;
};

}  // namespace

const char* PickleValue::kind_name() const {
  switch (kind) {
    case Kind::kNone: return "None";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return "str";
    case Kind::kBytes: return "bytes";
    case Kind::kTuple: return "tuple";
    case Kind::kList: return "list";
    case Kind::kDict: return "dict";
    case Kind::kGlobal: return "global";
    case Kind::kStorage: return "storage";
    case Kind::kTensor: return "tensor";
  }
  return "?";
}

const PickleValue* PickleValue::get(const std::string& key) const {
  for (auto it = dict.rbegin(); it != dict.rend(); ++it)
    if (it->first->kind == Kind::kString && it->first->s == key) return it->second.get();
  return nullptr;
}

PickleRef parse_torch_pickle(const uint8_t* data, size_t size, const std::string& label) {
  return Machine(data, size, label).run();
}

}  // namespace sdflow
