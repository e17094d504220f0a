// Thin RAII helpers over the SQLite C API: a connection with a prepared-statement cache, a bound statement,
// and an IMMEDIATE transaction. Every SQL value is bound as a parameter; SQL text is always a constant.
// Not thread-safe by itself: JobStore serializes access with its own mutex.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace aihub::store {

// Maps a SQLite result code (and the connection's message, when given) onto a Status.
Status SqliteStatus(int rc, sqlite3* db, std::string_view what);

// A statement borrowed from Db's cache; reset and unbound when it goes out of scope.
class Stmt {
 public:
  Stmt() = default;   // empty; only so StatusOr<Stmt> can hold an error
  Stmt(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Stmt& operator=(Stmt&&) = delete;
  Stmt(Stmt&& other) noexcept : db_(other.db_), stmt_(other.stmt_) { other.stmt_ = nullptr; }
  ~Stmt();

  // Parameters are 1-based, as in sqlite3_bind_*.
  Stmt& Bind(int index, int64_t value);
  // Text: invalid UTF-8 is bound as its ReplaceInvalidUtf8() form, so TEXT columns never hold invalid UTF-8.
  Stmt& Bind(int index, const std::string& value);
  Stmt& BindBlob(int index, const std::string& bytes);
  Stmt& BindNull(int index);
  // NULL when absent.
  Stmt& Bind(int index, const std::optional<int64_t>& value);

  // Advances: true while a row is available, false when done; a status on error (including a bind error).
  StatusOr<bool> Step();
  // Runs to completion, ignoring rows.
  Status Run();

  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::string Text(int col) const;   // "" for NULL; blobs come back byte for byte

 private:
  void NoteBind(int rc);
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
  int bind_rc_ = SQLITE_OK;
};

class Db {
 public:
  // flags: SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE or SQLITE_OPEN_READONLY (NOMUTEX is added).
  static StatusOr<std::unique_ptr<Db>> Open(const std::filesystem::path& path, int flags);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  sqlite3* handle() const { return db_; }
  // Runs one or more statements that take no parameters (schema, pragmas).
  Status Exec(const char* sql);
  // A cached prepared statement for constant SQL text.
  StatusOr<Stmt> Prepare(const char* sql);

 private:
  explicit Db(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  std::map<std::string, sqlite3_stmt*> cache_;
};

// BEGIN IMMEDIATE on construction (via Begin); ROLLBACK on destruction unless committed.
class Transaction {
 public:
  explicit Transaction(Db& db) : db_(db) {}
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  Status Begin();
  Status Commit();

 private:
  Db& db_;
  bool open_ = false;
};

}  // namespace aihub::store
