// Helpers shared by the job store tests: unique temp dirs, an injectable clock, raw SQL on the file.
#pragma once

#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace aihub::store::testing {

class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("aihub-store-test-" + std::to_string(getpid()) + "-" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path db() const { return path_ / "aihub.db"; }

 private:
  std::filesystem::path path_;
};

// A clock the test moves by hand; copies of Fn() all read the same time.
class FakeClock {
 public:
  FakeClock() : ms_(std::make_shared<std::atomic<int64_t>>(int64_t{1700000000000})) {}
  std::function<std::chrono::system_clock::time_point()> Fn() const {
    auto ms = ms_;
    return [ms] { return std::chrono::system_clock::time_point(std::chrono::milliseconds(ms->load())); };
  }
  std::chrono::system_clock::time_point Now() const { return Fn()(); }
  void Advance(std::chrono::milliseconds d) { ms_->fetch_add(d.count()); }

 private:
  std::shared_ptr<std::atomic<int64_t>> ms_;
};

// The whole content of a file ("" when it cannot be read).
inline std::string ReadFileBytes(const std::filesystem::path& path) {
  std::string out;
  if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
    char buf[4096];
    size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
    std::fclose(f);
  }
  return out;
}

inline void WriteFileBytes(const std::filesystem::path& path, const std::string& bytes) {
  if (std::FILE* f = std::fopen(path.c_str(), "wb")) {
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  }
}

// Calls fn(table, column, text) for every TEXT value in every table of the database: how the tests check that
// no row holds invalid UTF-8, whatever the column.
template <typename Fn>
void ForEachTextValue(const std::filesystem::path& db, Fn fn) {
  sqlite3* conn = nullptr;
  if (sqlite3_open_v2(db.c_str(), &conn, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close_v2(conn);
    return;
  }
  std::vector<std::string> tables;
  sqlite3_stmt* list = nullptr;
  if (sqlite3_prepare_v2(conn, "SELECT name FROM sqlite_master WHERE type = 'table'", -1, &list, nullptr) ==
      SQLITE_OK) {
    while (sqlite3_step(list) == SQLITE_ROW) tables.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(list, 0)));
  }
  sqlite3_finalize(list);
  for (const std::string& table : tables) {
    sqlite3_stmt* rows = nullptr;
    if (sqlite3_prepare_v2(conn, ("SELECT * FROM \"" + table + "\"").c_str(), -1, &rows, nullptr) != SQLITE_OK) {
      sqlite3_finalize(rows);
      continue;
    }
    while (sqlite3_step(rows) == SQLITE_ROW) {
      for (int c = 0; c < sqlite3_column_count(rows); ++c) {
        if (sqlite3_column_type(rows, c) != SQLITE_TEXT) continue;
        const char* p = static_cast<const char*>(sqlite3_column_blob(rows, c));
        const int n = sqlite3_column_bytes(rows, c);
        fn(table, std::string(sqlite3_column_name(rows, c)), std::string(p != nullptr ? p : "", p != nullptr ? n : 0));
      }
    }
    sqlite3_finalize(rows);
  }
  sqlite3_close_v2(conn);
}

// Runs SQL on its own raw connection (as an operator with the sqlite3 CLI would); returns the SQLite code and
// fills *error with the message.
inline int RawExec(const std::filesystem::path& db, const std::string& sql, std::string* error = nullptr) {
  sqlite3* conn = nullptr;
  int rc = sqlite3_open_v2(db.c_str(), &conn, SQLITE_OPEN_READWRITE, nullptr);
  if (rc == SQLITE_OK) {
    sqlite3_busy_timeout(conn, 5000);
    char* err = nullptr;
    rc = sqlite3_exec(conn, sql.c_str(), nullptr, nullptr, &err);
    if (error != nullptr) *error = err != nullptr ? err : "";
    sqlite3_free(err);
  }
  sqlite3_close_v2(conn);
  return rc;
}

// First column of the first row of a query, as text ("" when no row).
inline std::string RawQuery(const std::filesystem::path& db, const std::string& sql) {
  sqlite3* conn = nullptr;
  std::string out;
  if (sqlite3_open_v2(db.c_str(), &conn, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(conn, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK && sqlite3_step(stmt) == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(stmt, 0);
      if (text != nullptr) out = reinterpret_cast<const char*>(text);
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close_v2(conn);
  return out;
}

}  // namespace aihub::store::testing
