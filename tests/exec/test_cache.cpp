#include <gtest/gtest.h>

#include "exec/cache.h"

namespace sdflow {
namespace {

ValueList one(int v) { return {Value::primitive(v)}; }

TEST(OutputCache, ClassicKeepsOnlyKeysOfTheCurrentRun) {
  OutputCache c(CacheMode::kClassic);
  c.begin_run({"a", "b"});
  c.store("a", one(1));
  c.store("b", one(2));
  c.begin_run({"b", "c"});
  EXPECT_EQ(c.size(), 1u);
  EXPECT_EQ(c.find("a"), nullptr);
  ASSERT_NE(c.find("b"), nullptr);
  EXPECT_EQ(c.find("b")->at(0).as_int(), 2);
}

TEST(OutputCache, NoneStoresNothing) {
  OutputCache c(CacheMode::kNone);
  c.begin_run({"a"});
  c.store("a", one(1));
  EXPECT_EQ(c.size(), 0u);
  EXPECT_EQ(c.find("a"), nullptr);
}

TEST(OutputCache, LruEvictsOldestRunsButNeverTheCurrentOne) {
  OutputCache c(CacheMode::kLru, 2);
  c.begin_run({});
  c.store("a", one(1));
  c.store("b", one(2));
  c.store("c", one(3));  // over capacity, but all from this run
  EXPECT_EQ(c.size(), 3u);
  c.begin_run({});  // run 2 evicts run 1's entries to get back under capacity
  EXPECT_EQ(c.size(), 0u);
  c.store("d", one(4));
  c.begin_run({});
  EXPECT_NE(c.find("d"), nullptr);  // used by run 3 now
  c.store("e", one(5));
  c.begin_run({});
  c.store("f", one(6));  // 3 entries: d,e (run 3) and f (run 4) → run 3 goes
  EXPECT_EQ(c.size(), 1u);
  EXPECT_NE(c.find("f"), nullptr);
}

TEST(OutputCache, LruHitRefreshesAnEntry) {
  OutputCache c(CacheMode::kLru, 1);
  c.begin_run({});
  c.store("old", one(1));
  c.begin_run({});
  EXPECT_NE(c.find("old"), nullptr);
  c.store("new", one(2));  // both belong to the current run now
  EXPECT_EQ(c.size(), 2u);
}

TEST(Hash128, FnvTestVectors) {
  EXPECT_EQ(hash128_hex(""), "6c62272e07bb014262b821756295c58d");
  EXPECT_EQ(hash128_hex("a"), "d228cb696f1a8caf78912b704e4a8964");
  EXPECT_NE(hash128_hex("ab"), hash128_hex("ba"));
}

}  // namespace
}  // namespace sdflow
