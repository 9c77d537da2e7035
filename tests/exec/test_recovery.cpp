// The executor's half of the OOM ladder (Note [OOM ladder] in exec/recovery.h): a node whose
// error the recovery recognises is run again while the recovery has rungs left; everything else
// fails as before. Stub nodes fail a set number of times with a marker error.
#include <gtest/gtest.h>

#include "exec/executor.h"
#include "graph/stub_nodes.h"

namespace sdflow {
namespace {

using test::link;
using test::node;
using test::num;
using test::workflow;

// What the fake device throws: recognised by the fake recovery, not an sdflow::Error.
struct FakeOom : std::runtime_error {
  FakeOom() : std::runtime_error("fake device: out of memory") {}
};

class CountingRecovery final : public NodeRecovery {
 public:
  explicit CountingRecovery(int rungs) : rungs_(rungs) {}
  bool recoverable(const std::exception& e) const override {
    return dynamic_cast<const FakeOom*>(&e) != nullptr;
  }
  bool next(const NodeFailure& f) override {
    attempts.push_back(f.attempt);
    last_message = f.message;
    return static_cast<int>(attempts.size()) <= rungs_;
  }
  std::string give_up(const NodeFailure& f) const override {
    return "gave up after " + std::to_string(f.attempt);
  }
  void node_finished(const std::string& id) override { finished.push_back(id); }

  std::vector<int> attempts;
  std::vector<std::string> finished;
  std::string last_message;

 private:
  int rungs_;
};

class RecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry = test::make_registry(&rec);
    // Fails `failures_left` times (a negative count: always), then passes its input on.
    test::add_lambda(registry, &rec, SchemaBuilder("Flaky").socket("x", "NUMBER").output("NUMBER").build(),
                     [this](NodeContext&, const NodeInputs& in) -> ValueList {
                       if (failures_left != 0) {
                         if (failures_left > 0) --failures_left;
                         throw FakeOom();
                       }
                       return {in.at("x")};
                     });
  }
  Workflow graph() const {
    return workflow({node("1", "Const", {{"value", 7}}), node("2", "Flaky", {{"x", link("1")}}),
                     node("3", "Sink", {{"x", link("2")}})});
  }
  RunSummary run(Executor& ex, NodeRecovery* recovery) {
    RunContext ctx;
    ctx.recovery = recovery;
    ctx.on_event = [this](const ExecEvent& e) { events.push_back(e); };
    return ex.run(graph(), ctx);
  }

  test::Recorder rec;
  NodeRegistry registry;
  int failures_left = 0;
  std::vector<ExecEvent> events;
};

TEST_F(RecoveryTest, RetriesUntilTheNodeSucceeds) {
  for (int failures : {1, 2}) {
    SCOPED_TRACE(failures);
    failures_left = failures;
    rec = {};
    CountingRecovery recovery(/*rungs=*/3);
    Executor ex(registry);
    RunSummary s = run(ex, &recovery);
    EXPECT_EQ(num(s.outputs.at("3").at(0)), 7);
    EXPECT_EQ(rec.runs["2"], failures + 1);
    std::vector<int> expected;
    for (int i = 1; i <= failures; ++i) expected.push_back(i);
    EXPECT_EQ(recovery.attempts, expected);
    EXPECT_EQ(recovery.last_message, "fake device: out of memory");
    // Every node that ran is finished once, the flaky one after its last attempt.
    EXPECT_EQ(recovery.finished, (std::vector<std::string>{"1", "2", "3"}));
  }
}

TEST_F(RecoveryTest, FailsAsOutOfMemoryWhenNothingIsLeft) {
  failures_left = -1;
  CountingRecovery recovery(/*rungs=*/2);
  Executor ex(registry);
  try {
    run(ex, &recovery);
    FAIL() << "the run did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kOutOfMemory);
    EXPECT_STREQ(e.what(), "[Flaky #2] gave up after 3");
  }
  EXPECT_EQ(rec.runs["2"], 3);  // the first try and one per rung
  EXPECT_EQ(recovery.attempts, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(recovery.finished, (std::vector<std::string>{"1", "2"}));
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().type, ExecEvent::Type::kError);
  EXPECT_EQ(events.back().message, "[Flaky #2] gave up after 3");
}

TEST_F(RecoveryTest, OtherErrorsAreNotRetried) {
  CountingRecovery recovery(/*rungs=*/5);
  Executor ex(registry);
  RunContext ctx;
  ctx.recovery = &recovery;
  Workflow wf =
      workflow({node("1", "Const", {{"value", 1}}), node("2", "Fail", {{"x", link("1")}, {"mode", "error"}}),
                node("3", "Sink", {{"x", link("2")}})});
  try {
    ex.run(wf, ctx);
    FAIL() << "the run did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kModel);
    EXPECT_STREQ(e.what(), "[Fail #2] checkpoint is not a UNet");
  }
  EXPECT_TRUE(recovery.attempts.empty());
  EXPECT_EQ(rec.runs["2"], 1);
}

TEST_F(RecoveryTest, WithoutARecoveryTheFirstFailureFails) {
  failures_left = 1;
  Executor ex(registry);
  try {
    run(ex, nullptr);
    FAIL() << "the run did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kRuntime);
    EXPECT_STREQ(e.what(), "[Flaky #2] fake device: out of memory");
  }
  EXPECT_EQ(rec.runs["2"], 1);
}

}  // namespace
}  // namespace sdflow
