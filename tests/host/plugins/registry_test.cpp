#include "plugins/registry.h"

#include <doctest/doctest.h>

#include <chrono>
#include <thread>

#include "test_support.h"

namespace aihub::plugins {

using aihub::testing::Deploy;
using aihub::testing::IsMapped;
using aihub::testing::TagOnlyStudy;
using aihub::testing::TempDir;
using aihub::testing::TestPlugin;

namespace {

struct Fixture {
  TempDir dir{"plugins"};
  TempDir cache{"cache"};
  std::vector<ReloadEvent> events;
  PluginRegistry registry{dir.path(), cache.path(), [](const std::string&) { return std::string("{}"); },
                          [this](const ReloadEvent& e) { events.push_back(e); }};
};

std::string ActiveVersion(const PluginRegistry& r, const std::string& id) {
  auto p = r.Get(id);
  return p ? p->info().version : "";
}

}  // namespace

TEST_CASE("hot reload: new version swaps in, pinned old version stays mapped until released") {
  Fixture f;
  CHECK(f.registry.Rescan().empty());

  Deploy(TestPlugin("fixed_work_v1"), f.dir / "fixed_work.so");
  auto ev = f.registry.Rescan();
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].kind == ReloadEvent::Kind::kLoaded);
  CHECK(ActiveVersion(f.registry, "fixed-work") == "1.0.0");
  CHECK(f.registry.Rescan().empty());  // unchanged file: nothing to do

  LoadedPluginPtr pinned = f.registry.Get("fixed-work");  // an in-flight job
  const auto v1_path = pinned->info().loaded_path;

  Deploy(TestPlugin("fixed_work_v2"), f.dir / "fixed_work.so");
  ev = f.registry.Rescan();
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].kind == ReloadEvent::Kind::kReplaced);
  CHECK(ev[0].reason == "was 1.0.0");
  CHECK(ActiveVersion(f.registry, "fixed-work") == "2.0.0");
  CHECK(IsMapped(v1_path));  // still pinned by the job

  // The pinned job still runs on version 1.
  const dicom::Study study = TagOnlyStudy();
  JobInput in;
  in.study = &study;
  in.series.push_back(&study.series[0]);
  JobOutput out;
  std::atomic<bool> cancel{false};
  REQUIRE(pinned->Execute(in, &out, &cancel).ok());
  CHECK(out.findings.at(0).text == "fixed-work 1.0.0");

  pinned.reset();  // the job ends
  CHECK_FALSE(IsMapped(v1_path));
  CHECK(IsMapped(f.registry.Get("fixed-work")->info().loaded_path));
}

TEST_CASE("hot reload: a broken new version leaves the old one serving") {
  Fixture f;
  Deploy(TestPlugin("fixed_work_v2"), f.dir / "fixed_work.so");
  f.registry.Rescan();
  REQUIRE(ActiveVersion(f.registry, "fixed-work") == "2.0.0");

  SUBCASE("failing self-test") {
    Deploy(TestPlugin("fixed_work_v3"), f.dir / "fixed_work.so");
    auto ev = f.registry.Rescan();
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].kind == ReloadEvent::Kind::kRejected);
    CHECK(ev[0].reason.find("self-test") != std::string::npos);
  }
  SUBCASE("ABI mismatch") {
    Deploy(TestPlugin("abi_major2"), f.dir / "fixed_work.so");
    auto ev = f.registry.Rescan();
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].kind == ReloadEvent::Kind::kRejected);
    CHECK(ev[0].reason.find("not compatible") != std::string::npos);
  }
  SUBCASE("missing symbol") {
    Deploy(TestPlugin("missing_execute"), f.dir / "fixed_work.so");
    auto ev = f.registry.Rescan();
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].reason.find("aihub_plugin_execute") != std::string::npos);
  }
  SUBCASE("truncated file") {
    const auto tmp = f.dir / ".partial";
    {
      std::ifstream in(TestPlugin("fixed_work_v1"), std::ios::binary);
      std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      std::ofstream(tmp, std::ios::binary) << bytes.substr(0, 4096);
    }
    std::filesystem::rename(tmp, f.dir / "fixed_work.so");
    auto ev = f.registry.Rescan();
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].kind == ReloadEvent::Kind::kRejected);
    CHECK(ev[0].reason.find("cannot load shared library") != std::string::npos);
  }
  CHECK(ActiveVersion(f.registry, "fixed-work") == "2.0.0");
  CHECK(f.registry.Rescan().empty());  // the same broken file is not retried on every scan
}

TEST_CASE("duplicate plugin ids are refused, removing the file retires the plugin") {
  Fixture f;
  Deploy(TestPlugin("fixed_work_v1"), f.dir / "a_fixed_work.so");
  Deploy(TestPlugin("fixed_work_v2"), f.dir / "b_fixed_work.so");
  auto ev = f.registry.Rescan();
  REQUIRE(ev.size() == 2);
  CHECK(ev[0].kind == ReloadEvent::Kind::kLoaded);
  CHECK(ev[1].kind == ReloadEvent::Kind::kRejected);
  CHECK(ev[1].reason.find("duplicate plugin id 'fixed-work': already provided by a_fixed_work.so") !=
        std::string::npos);
  CHECK(ActiveVersion(f.registry, "fixed-work") == "1.0.0");

  CHECK(f.registry.Rescan().empty());  // the refused duplicate is not retried while a_ provides the id

  // Retiring the owner lets the refused duplicate take over.
  std::filesystem::remove(f.dir / "a_fixed_work.so");
  ev = f.registry.Rescan();
  REQUIRE(ev.size() == 2);
  CHECK(ev[0].kind == ReloadEvent::Kind::kRemoved);
  CHECK(ev[0].version == "1.0.0");
  CHECK(ev[1].kind == ReloadEvent::Kind::kLoaded);
  CHECK(ev[1].file.filename() == "b_fixed_work.so");
  CHECK(ActiveVersion(f.registry, "fixed-work") == "2.0.0");

  std::filesystem::remove(f.dir / "b_fixed_work.so");
  ev = f.registry.Rescan();
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].kind == ReloadEvent::Kind::kRemoved);
  CHECK(f.registry.Get("fixed-work") == nullptr);
}

TEST_CASE("a file whose upgrade was refused still owns its plugin: deleting it retires the old version") {
  Fixture f;
  Deploy(TestPlugin("fixed_work_v1"), f.dir / "fixed_work.so");
  f.registry.Rescan();
  Deploy(TestPlugin("fixed_work_v3"), f.dir / "fixed_work.so");  // self-test fails
  REQUIRE(f.registry.Rescan().at(0).kind == ReloadEvent::Kind::kRejected);
  REQUIRE(ActiveVersion(f.registry, "fixed-work") == "1.0.0");
  std::filesystem::remove(f.dir / "fixed_work.so");
  auto ev = f.registry.Rescan();
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].kind == ReloadEvent::Kind::kRemoved);
  CHECK(f.registry.Get("fixed-work") == nullptr);
}

TEST_CASE("the watcher picks up a renamed-in version without an explicit rescan") {
  Fixture f;
  f.registry.StartWatching(std::chrono::milliseconds(10000));  // long poll: inotify must do the work
  Deploy(TestPlugin("fixed_work_v1"), f.dir / "fixed_work.so");
  for (int i = 0; i < 200 && ActiveVersion(f.registry, "fixed-work") != "1.0.0"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  CHECK(ActiveVersion(f.registry, "fixed-work") == "1.0.0");
  Deploy(TestPlugin("fixed_work_v2"), f.dir / "fixed_work.so");
  for (int i = 0; i < 200 && ActiveVersion(f.registry, "fixed-work") != "2.0.0"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  CHECK(ActiveVersion(f.registry, "fixed-work") == "2.0.0");
  f.registry.StopWatching();
}

TEST_CASE("jobs streaming through a swap all complete, on the version they started with") {
  Fixture f;
  Deploy(TestPlugin("fixed_work_v1"), f.dir / "fixed_work.so");
  f.registry.Rescan();
  const dicom::Study study = TagOnlyStudy();
  std::atomic<bool> stop{false};
  std::atomic<int> started{0}, completed{0}, mismatched{0};
  auto worker = [&] {
    while (!stop) {
      LoadedPluginPtr p = f.registry.Get("fixed-work");
      if (!p) continue;
      ++started;
      JobInput in;
      in.study = &study;
      in.series.push_back(&study.series[0]);
      JobOutput out;
      std::atomic<bool> cancel{false};
      if (p->Execute(in, &out, &cancel).ok() && out.findings.size() == 1) {
        ++completed;
        if (out.findings[0].text != "fixed-work " + p->info().version) ++mismatched;
      }
    }
  };
  std::thread a(worker), b(worker);
  for (int round = 0; round < 6; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    Deploy(TestPlugin(round % 2 ? "fixed_work_v1" : "fixed_work_v2"), f.dir / "fixed_work.so");
    auto ev = f.registry.Rescan();
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].kind == ReloadEvent::Kind::kReplaced);
  }
  stop = true;
  a.join();
  b.join();
  CHECK(started.load() > 0);
  CHECK(completed.load() == started.load());
  CHECK(mismatched.load() == 0);
}

}  // namespace aihub::plugins

namespace aihub::plugins {

TEST_CASE("Recreate gives an active plugin a new instance with its current config") {
  TempDir dir("plugins"), cache("cache");
  std::string config = R"({"echo": "model_path", "model": "a.pt"})";
  PluginRegistry registry(dir.path(), cache.path(), [&](const std::string&) { return config; });
  Deploy(TestPlugin("fixed_work_v1"), dir / "fixed_work.so");
  registry.Rescan();
  const dicom::Study study = TagOnlyStudy();
  auto text = [&] {
    JobInput in;
    in.study = &study;
    in.series.push_back(&study.series[0]);
    JobOutput out;
    std::atomic<bool> cancel{false};
    REQUIRE(registry.Get("fixed-work")->Execute(in, &out, &cancel).ok());
    return out.findings.at(0).text;
  };
  CHECK(text() == (dir / "a.pt").string());
  config = R"({"echo": "model_path", "model": "b.pt"})";
  auto ev = registry.Recreate("fixed-work", "config changed");
  REQUIRE(ev.ok());
  CHECK(ev->kind == ReloadEvent::Kind::kReplaced);
  CHECK(ev->reason == "config changed");
  CHECK(text() == (dir / "b.pt").string());

  config = R"({"fail_self_test": "true"})";
  ev = registry.Recreate("fixed-work", "config changed");
  REQUIRE(ev.ok());
  CHECK(ev->kind == ReloadEvent::Kind::kRejected);  // the running instance stays
  CHECK(text() == (dir / "b.pt").string());
  CHECK(registry.Recreate("nope", "x").status().code() == AIHUB_NOT_FOUND);
}

}  // namespace aihub::plugins
