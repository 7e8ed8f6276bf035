// A small JSON reader for Hugging Face tokenizer.json files: the whole document as a tree of
// values. It accepts RFC 8259 JSON (strings with \u escapes and surrogate pairs become UTF-8)
// and refuses anything else with the byte offset of the problem; nesting deeper than 64 is
// refused too, so hostile files cannot exhaust the stack.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace loom::json {

struct Member;

struct Value {
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };
  Kind kind = Kind::kNull;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<Value> array;
  // In file order. Member, not std::pair<std::string, Value>: a pair of the incomplete Value is
  // refused by clang with libstdc++ (the sanitizer builds), a vector of a declared struct is not.
  std::vector<Member> object;

  bool is_null() const { return kind == Kind::kNull; }
  bool is_string() const { return kind == Kind::kString; }
  bool is_number() const { return kind == Kind::kNumber; }
  bool is_bool() const { return kind == Kind::kBool; }
  bool is_array() const { return kind == Kind::kArray; }
  bool is_object() const { return kind == Kind::kObject; }
  // The member `key` of an object (the last one if repeated); nullptr when absent or not an
  // object.
  const Value* Find(std::string_view key) const;
};

// An object's member: the key and its value (named as std::pair's, which it replaces).
struct Member {
  std::string first;
  Value second;
};

// "null", "true", "a number", ...: for messages.
std::string_view KindName(Value::Kind kind);

absl::StatusOr<Value> Parse(std::string_view text);

}  // namespace loom::json
