#include <gtest/gtest.h>

#include "exec/executor.h"
#include "graph/stub_nodes.h"

namespace sdflow {
namespace {

using test::link;
using test::node;
using test::num;
using test::workflow;
using Ids = std::vector<std::string>;
using T = ExecEvent::Type;

// 1:Const(2) ─► 2:Scale(x3) ─► 4:Add ─► 5:Sink      (and 6:Const, not needed by any output)
// 3:Const(5) ───────────────────┘
Workflow chain(int64_t c1 = 2, int64_t c3 = 5, double factor = 3) {
  return workflow(
      {node("1", "Const", {{"value", c1}}), node("2", "Scale", {{"x", link("1")}, {"factor", factor}}),
       node("3", "Const", {{"value", c3}}), node("4", "Add", {{"a", link("2")}, {"b", link("3")}}),
       node("5", "Sink", {{"x", link("4")}}), node("6", "Const", {{"value", 9}})});
}

class ExecutorTest : public ::testing::Test {
 protected:
  RunSummary run(Executor& ex, const Workflow& wf) {
    RunContext ctx;
    ctx.cancel = &cancel;
    ctx.on_event = [this](const ExecEvent& e) { events.push_back(e); };
    return ex.run(wf, ctx);
  }
  // Runs expecting an Error; returns it.
  Error run_error(Executor& ex, const Workflow& wf) {
    try {
      run(ex, wf);
    } catch (const Error& e) {
      return e;
    }
    ADD_FAILURE() << "the run did not throw";
    return Error(ErrorKind::kUsage, "");
  }
  std::vector<T> event_types() const {
    std::vector<T> out;
    for (const auto& e : events) out.push_back(e.type);
    return out;
  }

  test::Recorder rec;
  NodeRegistry registry = test::make_registry(&rec);
  CancelToken cancel;
  std::vector<ExecEvent> events;

  void SetUp() override { rec.cancel = &cancel; }
};

TEST_F(ExecutorTest, RunsTheGraphAndReturnsOutputs) {
  Executor ex(registry);
  RunSummary s = run(ex, chain());
  ASSERT_EQ(s.outputs.count("5"), 1u);
  EXPECT_EQ(num(s.outputs.at("5").at(0)), 2 * 3 + 5);
  EXPECT_EQ(s.executed_count(), 5u);
  EXPECT_EQ(s.cached_count(), 0u);
  EXPECT_GE(s.seconds, 0.0);
}

TEST_F(ExecutorTest, ExecutionOrderIsStableTopological) {
  Executor ex(registry);
  RunSummary s = run(ex, chain());
  EXPECT_EQ(rec.order, (Ids{"1", "2", "3", "4", "5"}));
  Ids summary_order;
  for (const auto& r : s.nodes) summary_order.push_back(r.node_id);
  EXPECT_EQ(summary_order, rec.order);
}

TEST_F(ExecutorTest, DanglingNodesDoNotRun) {
  Workflow wf = chain();
  wf.nodes.push_back(node("7", "Fail", {{"x", link("6")}, {"mode", "error"}}));  // would throw if run
  Executor ex(registry);
  run(ex, wf);
  EXPECT_EQ(rec.runs.count("6"), 0u);
  EXPECT_EQ(rec.runs.count("7"), 0u);
}

TEST_F(ExecutorTest, SecondIdenticalRunExecutesNothing) {
  Executor ex(registry);
  run(ex, chain());
  events.clear();
  RunSummary s = run(ex, chain());
  EXPECT_EQ(s.executed_count(), 0u);
  EXPECT_EQ(s.cached_count(), 5u);
  EXPECT_EQ(rec.total(), 5);
  EXPECT_EQ(num(s.outputs.at("5").at(0)), 11);
  EXPECT_EQ(event_types(), (std::vector<T>{T::kStart, T::kCached, T::kCached, T::kCached, T::kCached,
                                           T::kCached, T::kSuccess}));
  EXPECT_EQ(ex.cache_size(), 5u);
}

TEST_F(ExecutorTest, ChangedConstantReRunsOnlyThatNodeAndDependents) {
  Executor ex(registry);
  run(ex, chain());
  rec.order.clear();
  RunSummary s = run(ex, chain(2, 6));
  EXPECT_EQ(rec.order, (Ids{"3", "4", "5"}));
  EXPECT_EQ(num(s.outputs.at("5").at(0)), 12);
  EXPECT_EQ(s.cached_count(), 2u);

  rec.order.clear();
  run(ex, chain(2, 6, 4.0));
  EXPECT_EQ(rec.order, (Ids{"2", "4", "5"}));
}

TEST_F(ExecutorTest, ConvertedConstantsShareTheCacheKey) {
  Executor ex(registry);
  run(ex, chain(2));
  rec.order.clear();
  Workflow wf = chain();
  wf.find("1")->inputs["value"] = "2";  // converts to the same INT
  run(ex, wf);
  EXPECT_TRUE(rec.order.empty());
}

TEST_F(ExecutorTest, UnknownExtraInputsDoNotChangeTheKey) {
  Executor ex(registry);
  run(ex, chain());
  Workflow wf = chain();
  wf.find("4")->inputs["note"] = "ignored";
  rec.order.clear();
  run(ex, wf);
  EXPECT_TRUE(rec.order.empty());
}

TEST_F(ExecutorTest, FingerprintChangeReRuns) {
  Workflow wf = workflow({node("1", "Const", {{"value", 1}}), node("2", "Fingerprinted", {{"x", link("1")}}),
                          node("3", "Sink", {{"x", link("2")}})});
  Executor ex(registry);
  run(ex, wf);
  rec.order.clear();
  run(ex, wf);
  EXPECT_TRUE(rec.order.empty());
  rec.external_state = "v2";
  run(ex, wf);
  EXPECT_EQ(rec.order, (Ids{"2", "3"}));
}

TEST_F(ExecutorTest, CacheNoneReRunsEverything) {
  Executor ex(registry, CacheMode::kNone);
  run(ex, chain());
  RunSummary s = run(ex, chain());
  EXPECT_EQ(s.executed_count(), 5u);
  EXPECT_EQ(rec.total(), 10);
  EXPECT_EQ(ex.cache_size(), 0u);
  EXPECT_EQ(num(s.outputs.at("5").at(0)), 11);
}

TEST_F(ExecutorTest, ClassicDropsEntriesOfOtherWorkflows) {
  Executor ex(registry);
  run(ex, chain());
  EXPECT_EQ(ex.cache_size(), 5u);
  run(ex, workflow({node("1", "Const", {{"value", 2}}), node("9", "Sink", {{"x", link("1")}})}));
  EXPECT_EQ(ex.cache_size(), 2u);  // Const(2) reused, Sink new; the rest dropped
  ex.clear_cache();
  EXPECT_EQ(ex.cache_size(), 0u);
}

TEST_F(ExecutorTest, LruKeepsEarlierWorkflows) {
  Executor ex(registry, CacheMode::kLru, 100);
  run(ex, chain());
  run(ex, workflow({node("1", "Const", {{"value", 40}}), node("9", "Sink", {{"x", link("1")}})}));
  rec.order.clear();
  run(ex, chain());
  EXPECT_TRUE(rec.order.empty());
}

TEST_F(ExecutorTest, IdenticalSubgraphsWithOtherIdsHitTheCache) {
  Executor ex(registry);
  run(ex, workflow({node("1", "Const", {{"value", 4}}), node("2", "Sink", {{"x", link("1")}})}));
  rec.order.clear();
  run(ex, workflow({node("10", "Const", {{"value", 4}}), node("20", "Sink", {{"x", link("10")}})}));
  EXPECT_TRUE(rec.order.empty());
}

TEST_F(ExecutorTest, NotIdempotentNodesAreKeyedById) {
  Executor ex(registry);
  run(ex, workflow({node("1", "Const", {{"value", 4}}), node("2", "Unique", {{"x", link("1")}}),
                    node("3", "Unique", {{"x", link("1")}}), node("4", "Sink", {{"x", link("2")}}),
                    node("5", "Sink", {{"x", link("3")}})}));
  // The two Unique nodes both run; the second Sink then differs by ancestry and runs too.
  EXPECT_EQ(rec.order, (Ids{"1", "2", "3", "4", "5"}));
}

TEST_F(ExecutorTest, DuplicateWorkWithinOneRunIsShared) {
  Executor ex(registry);
  RunSummary s =
      run(ex, workflow({node("1", "Const", {{"value", 4}}), node("2", "Const", {{"value", 4}}),
                        node("3", "Sink", {{"x", link("1")}}), node("4", "Sink", {{"x", link("2")}})}));
  EXPECT_EQ(rec.order, (Ids{"1", "3"}));
  EXPECT_EQ(num(s.outputs.at("4").at(0)), 4);
}

TEST_F(ExecutorTest, NodeObjectsPersistAcrossRuns) {
  Executor ex(registry);
  run(ex, chain());
  int consts = rec.created["Const"];
  run(ex, chain(7, 8));
  EXPECT_EQ(rec.created["Const"], consts);
  // Gone from the workflow: the object goes too, and a new one is made when it returns.
  run(ex, workflow({node("1", "Const", {{"value", 1}}), node("9", "Sink", {{"x", link("1")}})}));
  int after_drop = rec.created["Const"];
  run(ex, chain());
  EXPECT_GT(rec.created["Const"], after_drop);
}

TEST_F(ExecutorTest, ValidationFailureThrowsWithReportAndRunsNothing) {
  Executor ex(registry);
  Workflow wf = chain();
  wf.find("2")->inputs["factor"] = 50;
  try {
    run(ex, wf);
    FAIL() << "expected a validation error";
  } catch (const ValidationFailed& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kValidation);
    ASSERT_EQ(e.report().issues.size(), 1u);
    EXPECT_EQ(e.report().issues[0].kind, "value_bigger_than_max");
    EXPECT_EQ(std::string(e.what()), "[Scale #2] input 'factor': Value 50.0 bigger than max of 10.0");
  }
  EXPECT_EQ(rec.total(), 0);
  EXPECT_TRUE(events.empty());
}

TEST_F(ExecutorTest, NodeErrorKeepsKindAndGetsPrefix) {
  auto fail_wf = [](const char* mode) {
    return workflow({node("1", "Const", {{"value", 1}}),
                     node("2", "Fail", {{"x", link("1")}, {"mode", mode}}),
                     node("3", "Sink", {{"x", link("2")}})});
  };
  Executor ex(registry);
  Error e = run_error(ex, fail_wf("error"));
  EXPECT_EQ(e.kind(), ErrorKind::kModel);
  EXPECT_STREQ(e.what(), "[Fail #2] checkpoint is not a UNet");
  EXPECT_EQ(events.back().type, T::kError);
  EXPECT_EQ(events.back().node_id, "2");
  EXPECT_EQ(events.back().message, e.what());

  e = run_error(ex, fail_wf("prefixed"));
  EXPECT_EQ(e.kind(), ErrorKind::kIo);
  EXPECT_STREQ(e.what(), "[Inner #9] cannot read file");

  e = run_error(ex, fail_wf("std"));
  EXPECT_EQ(e.kind(), ErrorKind::kRuntime);
  EXPECT_STREQ(e.what(), "[Fail #2] something broke");

  e = run_error(ex, fail_wf("oom"));
  EXPECT_EQ(e.kind(), ErrorKind::kOutOfMemory);
  EXPECT_EQ(std::string(e.what()).rfind("[Fail #2] ", 0), 0u);

  // Nothing was cached for the failing node (it ran every time); its input was computed once.
  EXPECT_EQ(rec.runs["2"], 4);
  EXPECT_EQ(rec.runs["1"], 1);
  EXPECT_EQ(rec.runs.count("3"), 0u);
}

TEST_F(ExecutorTest, WrongOutputCountIsAnInternalError) {
  Executor ex(registry);
  Error e =
      run_error(ex, workflow({node("1", "Const", {{"value", 1}}), node("2", "WrongCount", {{"x", link("1")}}),
                              node("3", "Sink", {{"x", link("2")}})}));
  EXPECT_EQ(e.kind(), ErrorKind::kRuntime);
  EXPECT_EQ(std::string(e.what()).rfind("[WrongCount #2] internal error", 0), 0u) << e.what();
  EXPECT_EQ(ex.cache_size(), 1u);  // only Const
}

TEST_F(ExecutorTest, CancelBetweenNodes) {
  Workflow wf = workflow({node("1", "Const", {{"value", 1}}), node("2", "Canceller", {{"x", link("1")}}),
                          node("3", "Scale", {{"x", link("2")}, {"factor", 2}}),
                          node("4", "Sink", {{"x", link("3")}})});
  Executor ex(registry);
  Error e = run_error(ex, wf);
  EXPECT_EQ(e.kind(), ErrorKind::kCancelled);
  EXPECT_EQ(rec.order, (Ids{"1", "2"}));
  EXPECT_EQ(events.back().type, T::kInterrupted);
  EXPECT_EQ(events.back().node_id, "3");

  cancel.reset();
  rec.order.clear();
  RunSummary s = run(ex, wf);
  EXPECT_EQ(rec.order, (Ids{"3", "4"}));  // nodes that finished stay cached; 3 never ran
  EXPECT_EQ(num(s.outputs.at("4").at(0)), 2);
}

TEST_F(ExecutorTest, CancelInsideANode) {
  Workflow wf = workflow({node("1", "Const", {{"value", 1}}), node("2", "CancelInside", {{"x", link("1")}}),
                          node("3", "Sink", {{"x", link("2")}})});
  Executor ex(registry);
  Error e = run_error(ex, wf);
  EXPECT_EQ(e.kind(), ErrorKind::kCancelled);
  EXPECT_STREQ(e.what(), "[CancelInside #2] interrupted by the user");
  EXPECT_EQ(events.back().type, T::kInterrupted);
  EXPECT_EQ(events.back().node_id, "2");
  EXPECT_EQ(rec.runs.count("3"), 0u);
  EXPECT_EQ(ex.cache_size(), 1u);  // Const only: the interrupted node left nothing
}

TEST_F(ExecutorTest, CancelBeforeTheRunStarts) {
  cancel.request();
  Executor ex(registry);
  EXPECT_EQ(run_error(ex, chain()).kind(), ErrorKind::kCancelled);
  EXPECT_EQ(rec.total(), 0);
}

TEST_F(ExecutorTest, EventsOfARun) {
  Executor ex(registry);
  run(ex, workflow({node("1", "Const", {{"value", 1}}), node("2", "Progress", {{"x", link("1")}}),
                    node("3", "Sink", {{"x", link("2")}})}));
  EXPECT_EQ(event_types(),
            (std::vector<T>{T::kStart, T::kNodeStart, T::kNodeDone, T::kNodeStart, T::kProgress, T::kProgress,
                            T::kProgress, T::kNodeDone, T::kNodeStart, T::kNodeDone, T::kSuccess}));
  const ExecEvent& p = events[5];
  EXPECT_EQ(p.node_id, "2");
  EXPECT_EQ(p.class_type, "Progress");
  EXPECT_EQ(p.value, 2);
  EXPECT_EQ(p.max, 3);
  EXPECT_GE(events[2].seconds, 0.0);
  EXPECT_EQ(events[2].class_type, "Const");
}

TEST_F(ExecutorTest, NodesSeeThePromptAndServices) {
  struct Marker {
    int value = 42;
  };
  Marker marker;
  Services services;
  services.provide(&marker);
  const nlohmann::json* seen_prompt = nullptr;
  int seen_marker = 0;
  std::string seen_value_type;
  registry.add(SchemaBuilder("Probe").socket("x", "NUMBER").output_node().build(), [&] {
    return std::make_unique<test::LambdaNode>(&rec, [&](NodeContext& ctx, const NodeInputs&) {
      seen_prompt = ctx.prompt();
      seen_marker = ctx.services().get<Marker>().value;
      seen_value_type = (*ctx.prompt())["1"]["inputs"]["value"].is_number_integer() ? "int" : "other";
      return ValueList{};
    });
  });
  Executor ex(registry);
  RunContext ctx;
  ctx.services = &services;
  Workflow wf = workflow({node("1", "Const", {{"value", "3"}}), node("2", "Probe", {{"x", link("1")}})});
  RunSummary s = ex.run(wf, ctx);
  ASSERT_NE(seen_prompt, nullptr);
  EXPECT_EQ(seen_value_type, "int");  // the converted workflow, as ComfyUI writes values back
  EXPECT_EQ(seen_marker, 42);
  EXPECT_TRUE(s.outputs.at("2").empty());
}

TEST_F(ExecutorTest, ValidateWithoutRunning) {
  Executor ex(registry);
  Workflow wf = chain();
  wf.find("1")->inputs["value"] = "x";
  ValidationReport r = ex.validate(wf);
  ASSERT_EQ(r.issues.size(), 1u);
  EXPECT_EQ(r.issues[0].kind, "invalid_input_type");
  EXPECT_EQ(rec.total(), 0);
}

TEST_F(ExecutorTest, TargetsLimitWhatRuns) {
  Workflow wf = chain();
  wf.nodes.push_back(node("7", "Sink", {{"x", link("6")}}));
  ValidationOptions vopts;
  vopts.targets = {"7"};
  RunContext ctx;
  ctx.validation = &vopts;
  Executor ex(registry);
  ex.run(wf, ctx);
  EXPECT_EQ(rec.order, (Ids{"6", "7"}));
}

TEST_F(ExecutorTest, FailingFingerprintAlwaysReRuns) {
  struct Unstable : test::LambdaNode {
    using LambdaNode::LambdaNode;
    std::string fingerprint(const Services&, const nlohmann::json&) const override {
      throw std::runtime_error("cannot hash the input file");
    }
  };
  registry.add(SchemaBuilder("Unstable").socket("x", "NUMBER").output("NUMBER").build(), [this] {
    return std::make_unique<Unstable>(
        &rec, [](NodeContext&, const NodeInputs& in) { return ValueList{in.at("x")}; });
  });
  Workflow wf = workflow({node("1", "Const", {{"value", 1}}), node("2", "Unstable", {{"x", link("1")}}),
                          node("3", "Sink", {{"x", link("2")}})});
  Executor ex(registry);
  run(ex, wf);
  rec.order.clear();
  run(ex, wf);
  EXPECT_EQ(rec.order, (Ids{"2", "3"}));
}

TEST_F(ExecutorTest, ThrowingCustomValidationIsReported) {
  struct Throws : test::LambdaNode {
    using LambdaNode::LambdaNode;
    std::vector<std::pair<std::string, std::string>> validate(const ValidationEnv&,
                                                              const nlohmann::json&) const override {
      throw std::runtime_error("boom");
    }
  };
  registry.add(SchemaBuilder("Throws").socket("x", "NUMBER").output("NUMBER").build(), [this] {
    return std::make_unique<Throws>(&rec,
                                    [](NodeContext&, const NodeInputs& in) { return ValueList{in.at("x")}; });
  });
  Executor ex(registry);
  ValidationReport r =
      ex.validate(workflow({node("1", "Const", {{"value", 1}}), node("2", "Throws", {{"x", link("1")}}),
                            node("3", "Sink", {{"x", link("2")}})}));
  ASSERT_EQ(r.issues.size(), 1u);
  EXPECT_EQ(r.issues[0].kind, "custom_validation_failed");
  EXPECT_EQ(r.issues[0].node_id, "2");
  EXPECT_NE(r.issues[0].message.find("boom"), std::string::npos);
}

}  // namespace
}  // namespace sdflow
