#include <gtest/gtest.h>

#include "core/error.h"
#include "graph/plan.h"
#include "graph/stub_nodes.h"

namespace sdflow {
namespace {

using test::link;
using test::node;
using test::workflow;
using Ids = std::vector<std::string>;

TEST(Plan, OnlyNodesTheOutputsNeed) {
  Workflow wf = workflow({node("1", "Const"), node("2", "Const"), node("3", "Sink", {{"x", link("1")}}),
                          node("4", "Scale", {{"x", link("2")}})});
  EXPECT_EQ(plan_execution(wf, {"3"}).order, (Ids{"1", "3"}));
}

TEST(Plan, DependenciesFirstTiesByFileOrder) {
  // File order puts consumers before producers; the plan must not.
  Workflow wf =
      workflow({node("9", "Sink", {{"x", link("5")}}), node("5", "Add", {{"a", link("7")}, {"b", link("6")}}),
                node("7", "Const"), node("6", "Const"), node("8", "Sink", {{"x", link("6")}})});
  auto plan = plan_execution(wf, {"9", "8"});
  EXPECT_EQ(plan.order, (Ids{"7", "6", "5", "9", "8"}));
  EXPECT_EQ(plan.outputs, (Ids{"9", "8"}));
}

TEST(Plan, DiamondRunsSharedAncestorOnce) {
  Workflow wf = workflow(
      {node("1", "Const"), node("2", "Scale", {{"x", link("1")}}), node("3", "Scale", {{"x", link("1")}}),
       node("4", "Add", {{"a", link("2")}, {"b", link("3")}}), node("5", "Sink", {{"x", link("4")}})});
  EXPECT_EQ(plan_execution(wf, {"5"}).order, (Ids{"1", "2", "3", "4", "5"}));
}

TEST(Plan, StableAcrossCalls) {
  Workflow wf = workflow({node("b", "Const"), node("a", "Const"),
                          node("s", "Add", {{"a", link("a")}, {"b", link("b")}}),
                          node("o", "Sink", {{"x", link("s")}})});
  auto first = plan_execution(wf, {"o"}).order;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(plan_execution(wf, {"o"}).order, first);
  EXPECT_EQ(first, (Ids{"b", "a", "s", "o"}));
}

TEST(Plan, CycleThrows) {
  Workflow wf = workflow({node("1", "Scale", {{"x", link("2")}}), node("2", "Scale", {{"x", link("1")}}),
                          node("3", "Sink", {{"x", link("2")}})});
  try {
    plan_execution(wf, {"3"});
    FAIL() << "expected a cycle error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kValidation);
  }
}

TEST(Plan, UnknownOutputThrows) {
  EXPECT_THROW(plan_execution(workflow({node("1", "Const")}), {"2"}), Error);
}

}  // namespace
}  // namespace sdflow
