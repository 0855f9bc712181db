#include "control/config_loader.h"

#include <yaml-cpp/anchor.h>
#include <yaml-cpp/emitterstyle.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <limits>
#include <map>
#include <memory>
#include <new>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/quote.h"
#include "common/utf8.h"
#include "control/config_defaults.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/message.h"

namespace postern::control {
namespace {

namespace pb = ::google::protobuf;
namespace v1 = ::postern::config::v1;
using ::postern::config::v1::Config;

constexpr size_t kMaxConfigFileBytes = 16 << 20;
// google.protobuf.Duration's documented range: +-10000 years.
constexpr int64_t kMaxDurationSeconds = 315'576'000'000;

// ---------------------------------------------------------------------------
// The YAML document as a small tree of our own, built from yaml-cpp's parser
// events. yaml-cpp's Node API is avoided on purpose: its LoadAll loops forever
// on a document that starts with ',' (found by fuzzing), it turns a
// self-referencing anchor into a cyclic graph, and its iterators hand out
// references into temporaries.

struct YamlValue {
  enum class Kind { kNull, kScalar, kList, kMap };
  Kind kind = Kind::kNull;
  YAML::Mark mark;
  std::string text;  // kScalar
  // kList: the items. kMap: key, value, key, value, ... in document order, so
  // duplicate keys are still visible.
  std::vector<std::shared_ptr<const YamlValue>> items;
};

// Builds one document's tree. yaml-cpp reports structure errors by throwing
// (caught in ParseConfigYaml); the one problem it leaves to the handler, an
// alias to a node that is still open, is recorded in cycle_mark().
class TreeBuilder : public YAML::EventHandler {
 public:
  const std::shared_ptr<const YamlValue>& root() const { return root_; }
  const YAML::Mark& document_mark() const { return document_mark_; }
  // Where a cyclic alias was found; null_mark if none.
  const YAML::Mark& cycle_mark() const { return cycle_mark_; }

  void OnDocumentStart(const YAML::Mark& mark) override { document_mark_ = mark; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    Add(New(YamlValue::Kind::kNull, mark), anchor);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    // Anchors are registered when their node is complete, so an alias to an
    // enclosing node finds nothing: that would be a cycle.
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) {
      if (cycle_mark_.is_null()) cycle_mark_ = mark;
      Add(New(YamlValue::Kind::kNull, mark), YAML::NullAnchor);
      return;
    }
    Add(it->second, YAML::NullAnchor);
  }
  void OnScalar(const YAML::Mark& mark, const std::string& /*tag*/, YAML::anchor_t anchor,
                const std::string& value) override {
    std::shared_ptr<YamlValue> v = New(YamlValue::Kind::kScalar, mark);
    v->text = value;
    Add(std::move(v), anchor);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string& /*tag*/, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value /*style*/) override {
    open_.push_back({New(YamlValue::Kind::kList, mark), anchor});
  }
  void OnSequenceEnd() override { Close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string& /*tag*/, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value /*style*/) override {
    open_.push_back({New(YamlValue::Kind::kMap, mark), anchor});
  }
  void OnMapEnd() override { Close(); }

 private:
  struct Open {
    std::shared_ptr<YamlValue> value;
    YAML::anchor_t anchor;
  };

  static std::shared_ptr<YamlValue> New(YamlValue::Kind kind, const YAML::Mark& mark) {
    auto v = std::make_shared<YamlValue>();
    v->kind = kind;
    v->mark = mark;
    return v;
  }

  void Add(std::shared_ptr<const YamlValue> v, YAML::anchor_t anchor) {
    if (anchor != YAML::NullAnchor) anchors_[anchor] = v;
    if (open_.empty()) {
      root_ = std::move(v);
    } else {
      open_.back().value->items.push_back(std::move(v));
    }
  }

  void Close() {
    if (open_.empty()) return;  // unbalanced events: yaml-cpp never sends them
    Open done = std::move(open_.back());
    open_.pop_back();
    Add(std::move(done.value), done.anchor);
  }

  std::shared_ptr<const YamlValue> root_;
  std::vector<Open> open_;
  std::map<YAML::anchor_t, std::shared_ptr<const YamlValue>> anchors_;
  YAML::Mark document_mark_ = YAML::Mark::null_mark();
  YAML::Mark cycle_mark_ = YAML::Mark::null_mark();
};

// Only notes where the next document starts.
class DocumentProbe : public YAML::EventHandler {
 public:
  YAML::Mark mark = YAML::Mark::null_mark();
  void OnDocumentStart(const YAML::Mark& m) override { mark = m; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

std::string KindName(const YamlValue& v) {
  switch (v.kind) {
    case YamlValue::Kind::kMap:
      return "a map";
    case YamlValue::Kind::kList:
      return "a list";
    case YamlValue::Kind::kScalar:
      return absl::StrCat("the scalar ", Quote(v.text));
    case YamlValue::Kind::kNull:
      break;
  }
  return "nothing";
}

// A key as it appears in a key path: field-name-like keys verbatim, anything
// else quoted so the path stays readable.
std::string KeyForPath(absl::string_view key) {
  bool plain = !key.empty() && key.size() <= 64;
  for (char c : key) {
    plain = plain && (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-');
  }
  return plain ? std::string(key) : Quote(key);
}

// ---------------------------------------------------------------------------
// Scalar parsers. Each returns the value or InvalidArgument whose message is
// the problem alone; the caller adds where it was found.

absl::Status Problem(absl::string_view problem) { return absl::InvalidArgumentError(problem); }

bool AllDigits(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// Decimal digits into a uint64, refusing overflow.
absl::StatusOr<uint64_t> ParseDigits(absl::string_view digits, absl::string_view whole) {
  uint64_t value = 0;
  for (char c : digits) {
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - d) / 10) {
      return Problem(absl::StrCat(Quote(whole), " is too large"));
    }
    value = value * 10 + d;
  }
  return value;
}

struct Integer {
  bool negative = false;
  uint64_t magnitude = 0;
};

absl::StatusOr<Integer> ParseInteger(absl::string_view s) {
  Integer out;
  absl::string_view digits = s;
  out.negative = absl::ConsumePrefix(&digits, "-");
  if (!AllDigits(digits)) return Problem(absl::StrCat(Quote(s), " is not a whole number"));
  absl::StatusOr<uint64_t> magnitude = ParseDigits(digits, s);
  if (!magnitude.ok()) return magnitude.status();
  out.magnitude = *magnitude;
  return out;
}

// "1024", "64KB", "50 MiB". Every unit is a power of 1024 (see the header).
absl::StatusOr<uint64_t> ParseByteSize(absl::string_view s) {
  size_t n = 0;
  while (n < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[n]))) ++n;
  absl::string_view unit = absl::StripLeadingAsciiWhitespace(s.substr(n));
  const std::string problem = absl::StrCat(
      Quote(s), " is not a byte size (e.g. 1048576, 64KB, 50MB, 1GiB; K, M, G, T are 1024-based)");
  if (n == 0) return Problem(problem);
  const std::string lower = absl::AsciiStrToLower(unit);
  int shift = -1;
  static constexpr struct {
    absl::string_view names[3];
    int shift;
  } kUnits[] = {
      {{"", "b", "b"}, 0},      {{"k", "kb", "kib"}, 10}, {{"m", "mb", "mib"}, 20},
      {{"g", "gb", "gib"}, 30}, {{"t", "tb", "tib"}, 40},
  };
  for (const auto& u : kUnits) {
    for (absl::string_view name : u.names) {
      if (lower == name) shift = u.shift;
    }
  }
  if (shift < 0) return Problem(problem);
  absl::StatusOr<uint64_t> count = ParseDigits(s.substr(0, n), s);
  if (!count.ok()) return count.status();
  if (*count > (std::numeric_limits<uint64_t>::max() >> shift)) {
    return Problem(absl::StrCat(Quote(s), " is too large"));
  }
  return *count << shift;
}

// "500ms", "30s", "5m", "1h30m", "120h", "2d".
absl::StatusOr<pb::Duration> ParseDuration(absl::string_view s) {
  const std::string problem =
      absl::StrCat(Quote(s), " is not a duration (e.g. 500ms, 30s, 5m, 1h30m, 120h, 2d)");
  if (AllDigits(s)) {
    return Problem(absl::StrCat(Quote(s), " has no unit (e.g. ", s, "s or ", s, "m)"));
  }
  constexpr int64_t kMaxMillis = kMaxDurationSeconds * 1000;
  int64_t total_ms = 0;
  absl::string_view rest = s;
  if (rest.empty()) return Problem(problem);
  while (!rest.empty()) {
    size_t n = 0;
    while (n < rest.size() && absl::ascii_isdigit(static_cast<unsigned char>(rest[n]))) ++n;
    if (n == 0 || n > 15) return Problem(problem);
    int64_t count = 0;
    for (char c : rest.substr(0, n)) count = count * 10 + (c - '0');
    rest.remove_prefix(n);
    int64_t unit_ms = 0;
    if (absl::ConsumePrefix(&rest, "ms")) {
      unit_ms = 1;
    } else if (absl::ConsumePrefix(&rest, "s")) {
      unit_ms = 1000;
    } else if (absl::ConsumePrefix(&rest, "m")) {
      unit_ms = 60 * 1000;
    } else if (absl::ConsumePrefix(&rest, "h")) {
      unit_ms = 3600 * 1000;
    } else if (absl::ConsumePrefix(&rest, "d")) {
      unit_ms = 86400 * 1000;
    } else {
      return Problem(problem);
    }
    if (count > (kMaxMillis - total_ms) / unit_ms) {
      return Problem(absl::StrCat(Quote(s), " is too long"));
    }
    total_ms += count * unit_ms;
  }
  pb::Duration d;
  d.set_seconds(total_ms / 1000);
  d.set_nanos(static_cast<int32_t>(total_ms % 1000) * 1'000'000);
  return d;
}

absl::StatusOr<bool> ParseBool(absl::string_view s) {
  const std::string lower = absl::AsciiStrToLower(s);
  if (lower == "true") return true;
  if (lower == "false") return false;
  for (absl::string_view yaml11 : {"yes", "no", "y", "n", "on", "off"}) {
    if (lower == yaml11) {
      return Problem(absl::StrCat(Quote(s),
                                  " is not accepted as a boolean: write true or false (YAML 1.1 "
                                  "reads yes/no/on/off as booleans, YAML 1.2 as strings)"));
    }
  }
  return Problem(absl::StrCat(Quote(s), " is not a boolean (true or false)"));
}

// ListenerTls -> "LISTENER_TLS_".
std::string EnumPrefix(const pb::EnumDescriptor* e) {
  std::string out;
  const std::string& name = e->name();
  for (size_t i = 0; i < name.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(name[i]);
    if (i > 0 && absl::ascii_isupper(c) &&
        !absl::ascii_isupper(static_cast<unsigned char>(name[i - 1]))) {
      out += '_';
    }
    out += static_cast<char>(absl::ascii_toupper(c));
  }
  return out + "_";
}

// "AFTER_TLS" -> "after_tls", "1_2" -> "1.2": the spelling the admin writes.
std::string EnumDisplayName(absl::string_view suffix) {
  std::string out = absl::AsciiStrToLower(suffix);
  for (size_t i = 1; i + 1 < out.size(); ++i) {
    if (out[i] == '_' && absl::ascii_isdigit(static_cast<unsigned char>(out[i - 1])) &&
        absl::ascii_isdigit(static_cast<unsigned char>(out[i + 1]))) {
      out[i] = '.';
    }
  }
  return out;
}

absl::StatusOr<int> ParseEnum(absl::string_view s, const pb::EnumDescriptor* e) {
  const std::string prefix = EnumPrefix(e);
  std::string name = prefix;
  for (char c : s) {
    name += (c == '.' || c == '-') ? '_' : static_cast<char>(absl::ascii_toupper(c));
  }
  const pb::EnumValueDescriptor* v = s.empty() ? nullptr : e->FindValueByName(name);
  if (v != nullptr && v->number() != 0) return v->number();
  std::vector<std::string> expected;
  for (int i = 0; i < e->value_count(); ++i) {
    const pb::EnumValueDescriptor* value = e->value(i);
    if (value->number() == 0 || !absl::StartsWith(value->name(), prefix)) continue;
    expected.push_back(EnumDisplayName(absl::string_view(value->name()).substr(prefix.size())));
  }
  return Problem(
      absl::StrCat("unknown value ", Quote(s), " (expected ", absl::StrJoin(expected, ", "), ")"));
}

bool IsDuration(const pb::FieldDescriptor* field) {
  return field->message_type() == pb::Duration::descriptor();
}

// ---------------------------------------------------------------------------

// Maps one YAML document onto a message by reflection, remembering where each
// key path was written so that later errors (defaults, validation) can point
// at the line. Holds raw pointers into the message it fills: it must not
// outlive it, and the message must not be copied or moved in between.
class YamlToProto {
 public:
  explicit YamlToProto(absl::string_view source) : source_(source) {}

  absl::Status Error(const YAML::Mark& mark, absl::string_view path,
                     absl::string_view problem) const {
    std::string where = source_;
    if (!mark.is_null()) absl::StrAppend(&where, ":", mark.line + 1, ":", mark.column + 1);
    return absl::InvalidArgumentError(path.empty()
                                          ? absl::StrCat(where, ": ", problem)
                                          : absl::StrCat(where, ": ", path, ": ", problem));
  }

  absl::Status FillMessage(const YamlValue& node, const std::string& path, pb::Message* msg) {
    if (node.kind == YamlValue::Kind::kNull) return absl::OkStatus();
    if (node.kind != YamlValue::Kind::kMap) {
      return Error(node.mark, path, absl::StrCat("expected a map, got ", KindName(node)));
    }
    const pb::Descriptor* desc = msg->GetDescriptor();
    std::map<std::string, YAML::Mark> seen;
    for (size_t i = 0; i + 1 < node.items.size(); i += 2) {
      const YamlValue& key = *node.items[i];
      const YamlValue& value = *node.items[i + 1];
      if (key.kind != YamlValue::Kind::kScalar) {
        return Error(key.mark, path, absl::StrCat("a key must be a name, got ", KindName(key)));
      }
      const std::string& name = key.text;
      const std::string key_path =
          path.empty() ? KeyForPath(name) : absl::StrCat(path, ".", KeyForPath(name));
      if (auto [first, inserted] = seen.emplace(name, key.mark); !inserted) {
        return Error(key.mark, key_path,
                     absl::StrCat("duplicate key (first at line ", first->second.line + 1, ")"));
      }
      const pb::FieldDescriptor* field = desc->FindFieldByName(name);
      if (field == nullptr) {
        std::vector<std::string> names;
        for (int f = 0; f < desc->field_count(); ++f) names.push_back(desc->field(f)->name());
        return Error(
            key.mark, key_path,
            absl::StrCat("unknown key (expected one of: ", absl::StrJoin(names, ", "), ")"));
      }
      // A null value has no useful position of its own (yaml-cpp puts it at the
      // next token); the key's is where the admin looks.
      const YAML::Mark mark = value.kind == YamlValue::Kind::kNull ? key.mark : value.mark;
      marks_[key_path] = mark;
      absl::Status s = field->is_repeated() ? FillRepeated(value, mark, key_path, msg, field)
                                            : FillSingular(value, mark, key_path, msg, field);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  // The position of `path` or its nearest written ancestor, for errors found
  // after mapping.
  YAML::Mark FindMark(absl::string_view path) const {
    while (!path.empty()) {
      if (auto it = marks_.find(std::string(path)); it != marks_.end()) return it->second;
      const size_t cut = path.back() == ']' ? path.rfind('[') : path.rfind('.');
      path = path.substr(0, cut == absl::string_view::npos ? 0 : cut);
    }
    return YAML::Mark::null_mark();
  }

  // Run after ApplyDefaults: a key the admin wrote as 0 or "" that a default
  // replaced (see the header for why that is an error).
  absl::Status CheckExplicitZeros() const {
    for (const ExplicitZero& z : explicit_zeros_) {
      if (std::string now = NonZeroValueText(*z.msg, z.field); !now.empty()) {
        return Error(z.mark, z.path,
                     absl::StrCat("an empty or zero value here means \"use the default\" (", now,
                                  "); remove the key or write the value you want"));
      }
    }
    return absl::OkStatus();
  }

 private:
  struct ExplicitZero {
    pb::Message* msg;  // inside the message being filled
    const pb::FieldDescriptor* field;
    std::string path;
    YAML::Mark mark;
  };

  absl::Status FillRepeated(const YamlValue& node, const YAML::Mark& mark, const std::string& path,
                            pb::Message* msg, const pb::FieldDescriptor* field) {
    if (node.kind == YamlValue::Kind::kNull) return absl::OkStatus();
    if (node.kind != YamlValue::Kind::kList) {
      return Error(
          mark, path,
          absl::StrCat(
              "expected a list, got ", KindName(node),
              node.kind == YamlValue::Kind::kScalar ? " (write [value] for a list of one)" : ""));
    }
    const pb::Reflection* refl = msg->GetReflection();
    for (size_t i = 0; i < node.items.size(); ++i) {
      const YamlValue& item = *node.items[i];
      const std::string item_path = absl::StrCat(path, "[", i, "]");
      const YAML::Mark item_mark = item.kind == YamlValue::Kind::kNull ? mark : item.mark;
      marks_[item_path] = item_mark;
      absl::Status s;
      if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE && !IsDuration(field)) {
        s = FillMessage(item, item_path, refl->AddMessage(msg, field));
      } else {
        s = StoreScalar(item, item_mark, item_path, msg, field);
      }
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  absl::Status FillSingular(const YamlValue& node, const YAML::Mark& mark, const std::string& path,
                            pb::Message* msg, const pb::FieldDescriptor* field) {
    if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE && !IsDuration(field)) {
      // MutableMessage even for a null value: "tls:" alone says the section
      // is there, just empty.
      return FillMessage(node, path, msg->GetReflection()->MutableMessage(msg, field));
    }
    return StoreScalar(node, mark, path, msg, field);
  }

  // Converts one scalar and sets it (singular field) or appends it (repeated).
  absl::Status StoreScalar(const YamlValue& node, const YAML::Mark& mark, const std::string& path,
                           pb::Message* msg, const pb::FieldDescriptor* field) {
    if (node.kind != YamlValue::Kind::kScalar) {
      return Error(mark, path,
                   absl::StrCat("expected ", ExpectedName(field), ", got ", KindName(node)));
    }
    const std::string& text = node.text;
    const pb::Reflection* refl = msg->GetReflection();
    const bool rep = field->is_repeated();
    auto fail = [&](const absl::Status& s) { return Error(mark, path, s.message()); };
    bool zero = false;

    switch (field->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_STRING:
        // proto3 string fields must hold UTF-8, or the config fails to parse
        // on the far side of every process boundary it crosses as a protobuf.
        if (field->type() == pb::FieldDescriptor::TYPE_STRING && !IsValidUtf8(text)) {
          return Error(mark, path, absl::StrCat(Quote(text), " is not valid UTF-8"));
        }
        rep ? refl->AddString(msg, field, text) : refl->SetString(msg, field, text);
        zero = text.empty();
        break;
      case pb::FieldDescriptor::CPPTYPE_BOOL: {
        absl::StatusOr<bool> b = ParseBool(text);
        if (!b.ok()) return fail(b.status());
        rep ? refl->AddBool(msg, field, *b) : refl->SetBool(msg, field, *b);
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_ENUM: {
        absl::StatusOr<int> e = ParseEnum(text, field->enum_type());
        if (!e.ok()) return fail(e.status());
        rep ? refl->AddEnumValue(msg, field, *e) : refl->SetEnumValue(msg, field, *e);
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_INT32:
      case pb::FieldDescriptor::CPPTYPE_INT64:
      case pb::FieldDescriptor::CPPTYPE_UINT32:
      case pb::FieldDescriptor::CPPTYPE_UINT64: {
        absl::StatusOr<Integer> n = ParseIntegerField(text, field);
        if (!n.ok()) return fail(n.status());
        if (absl::Status s = StoreInteger(*n, text, msg, field); !s.ok()) return fail(s);
        zero = n->magnitude == 0 && !field->options().GetExtension(v1::allow_auto);
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_MESSAGE: {  // only Duration gets here
        absl::StatusOr<pb::Duration> d = ParseDuration(text);
        if (!d.ok()) return fail(d.status());
        (rep ? refl->AddMessage(msg, field) : refl->MutableMessage(msg, field))->CopyFrom(*d);
        break;
      }
      default:
        // float/double are not in the schema; adding one means teaching this
        // loader its syntax first.
        return absl::UnimplementedError(absl::StrCat(
            path, ": the config loader does not support field type ", field->cpp_type_name()));
    }
    if (zero && !rep) explicit_zeros_.push_back({msg, field, path, mark});
    return absl::OkStatus();
  }

  static absl::StatusOr<Integer> ParseIntegerField(const std::string& text,
                                                   const pb::FieldDescriptor* field) {
    const pb::FieldOptions& options = field->options();
    if (options.GetExtension(v1::allow_auto) && absl::AsciiStrToLower(text) == "auto") {
      return Integer{};
    }
    if (options.GetExtension(v1::byte_size)) {
      absl::StatusOr<uint64_t> size = ParseByteSize(text);
      if (!size.ok()) return size.status();
      return Integer{false, *size};
    }
    absl::StatusOr<Integer> n = ParseInteger(text);
    if (!n.ok() && options.GetExtension(v1::allow_auto)) {
      return Problem(absl::StrCat(Quote(text), " is not a whole number or auto"));
    }
    return n;
  }

  static absl::Status StoreInteger(const Integer& n, absl::string_view text, pb::Message* msg,
                                   const pb::FieldDescriptor* field) {
    const pb::Reflection* refl = msg->GetReflection();
    const bool rep = field->is_repeated();
    const bool is_signed = field->cpp_type() == pb::FieldDescriptor::CPPTYPE_INT32 ||
                           field->cpp_type() == pb::FieldDescriptor::CPPTYPE_INT64;
    if (n.negative && n.magnitude != 0 && !is_signed) {
      return Problem(absl::StrCat(Quote(text), " must not be negative"));
    }
    uint64_t max = 0;
    switch (field->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_INT32:
        max = std::numeric_limits<int32_t>::max();
        break;
      case pb::FieldDescriptor::CPPTYPE_INT64:
        max = std::numeric_limits<int64_t>::max();
        break;
      case pb::FieldDescriptor::CPPTYPE_UINT32:
        max = std::numeric_limits<uint32_t>::max();
        break;
      default:
        max = std::numeric_limits<uint64_t>::max();
        break;
    }
    // Two's complement: the negative range is one larger than the positive.
    if (n.magnitude > max + (n.negative ? 1 : 0)) {
      return Problem(absl::StrCat(Quote(text), " is out of range (at most ", max, ")"));
    }
    const int64_t signed_value =
        n.negative ? static_cast<int64_t>(0 - n.magnitude) : static_cast<int64_t>(n.magnitude);
    switch (field->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_INT32:
        rep ? refl->AddInt32(msg, field, static_cast<int32_t>(signed_value))
            : refl->SetInt32(msg, field, static_cast<int32_t>(signed_value));
        break;
      case pb::FieldDescriptor::CPPTYPE_INT64:
        rep ? refl->AddInt64(msg, field, signed_value) : refl->SetInt64(msg, field, signed_value);
        break;
      case pb::FieldDescriptor::CPPTYPE_UINT32:
        rep ? refl->AddUInt32(msg, field, static_cast<uint32_t>(n.magnitude))
            : refl->SetUInt32(msg, field, static_cast<uint32_t>(n.magnitude));
        break;
      default:
        rep ? refl->AddUInt64(msg, field, n.magnitude) : refl->SetUInt64(msg, field, n.magnitude);
        break;
    }
    return absl::OkStatus();
  }

  // The field's value as text, or "" while it still holds the proto zero.
  static std::string NonZeroValueText(const pb::Message& msg, const pb::FieldDescriptor* field) {
    const pb::Reflection* refl = msg.GetReflection();
    switch (field->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_STRING: {
        const std::string v = refl->GetString(msg, field);
        return v.empty() ? "" : Quote(v);
      }
      case pb::FieldDescriptor::CPPTYPE_INT32: {
        const int32_t v = refl->GetInt32(msg, field);
        return v == 0 ? "" : absl::StrCat(v);
      }
      case pb::FieldDescriptor::CPPTYPE_INT64: {
        const int64_t v = refl->GetInt64(msg, field);
        return v == 0 ? "" : absl::StrCat(v);
      }
      case pb::FieldDescriptor::CPPTYPE_UINT32: {
        const uint32_t v = refl->GetUInt32(msg, field);
        return v == 0 ? "" : absl::StrCat(v);
      }
      case pb::FieldDescriptor::CPPTYPE_UINT64: {
        const uint64_t v = refl->GetUInt64(msg, field);
        return v == 0 ? "" : absl::StrCat(v);
      }
      default:
        return "";  // StoreScalar records only the types above
    }
  }

  static std::string ExpectedName(const pb::FieldDescriptor* field) {
    switch (field->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_STRING:
        return "a string";
      case pb::FieldDescriptor::CPPTYPE_BOOL:
        return "true or false";
      case pb::FieldDescriptor::CPPTYPE_ENUM:
        return "a name";
      case pb::FieldDescriptor::CPPTYPE_MESSAGE:
        return "a duration";
      default:
        return field->options().GetExtension(v1::byte_size) ? "a byte size" : "a number";
    }
  }

  std::string source_;
  std::map<std::string, YAML::Mark> marks_;
  std::vector<ExplicitZero> explicit_zeros_;
};

absl::StatusOr<Config> Parse(absl::string_view yaml, absl::string_view source_name,
                             Config* as_written) {
  YamlToProto mapper(source_name);
  std::istringstream in{std::string(yaml)};
  YAML::Parser parser(in);
  TreeBuilder builder;
  Config config;
  // HandleNextDocument is called at most twice: once for the document, once
  // to see that nothing follows. (yaml-cpp's own LoadAll loops until the
  // parser says "no more", which it never does when stuck; see YamlValue.)
  if (parser.HandleNextDocument(builder)) {
    if (!builder.cycle_mark().is_null()) {
      return mapper.Error(builder.cycle_mark(), "",
                          "an alias may not refer to a node that contains it");
    }
    DocumentProbe next;
    if (parser.HandleNextDocument(next)) {
      // A "next document" at the position where this one started means the
      // parser is stuck on a token it cannot use (e.g. a leading ',').
      if (next.mark.pos == builder.document_mark().pos) {
        const size_t pos = static_cast<size_t>(std::max(next.mark.pos, 0));
        return mapper.Error(next.mark, "",
                            absl::StrCat("YAML syntax error: unexpected ",
                                         Quote(pos < yaml.size() ? yaml.substr(pos, 1) : "")));
      }
      return mapper.Error(next.mark, "",
                          "a config file holds one YAML document; found more from here on");
    }
    const YamlValue* root = builder.root().get();
    if (root != nullptr && root->kind != YamlValue::Kind::kNull) {
      if (root->kind != YamlValue::Kind::kMap) {
        return mapper.Error(
            root->mark, "",
            absl::StrCat("expected a map of sections (node:, listeners:, ...), got ",
                         KindName(*root)));
      }
      if (absl::Status s = mapper.FillMessage(*root, "", &config); !s.ok()) return s;
    }
  }
  if (as_written != nullptr) *as_written = config;
  ApplyDefaults(&config);
  if (absl::Status s = mapper.CheckExplicitZeros(); !s.ok()) return s;
  if (absl::Status s = ValidateConfig(config); !s.ok()) {
    // ValidateConfig's messages start with the key path (its contract).
    const absl::string_view message = s.message();
    const size_t colon = message.find(": ");
    const absl::string_view path = colon == absl::string_view::npos ? "" : message.substr(0, colon);
    const YAML::Mark mark = mapper.FindMark(path);
    std::string where(source_name);
    if (!mark.is_null()) absl::StrAppend(&where, ":", mark.line + 1, ":", mark.column + 1);
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", message));
  }
  return config;
}

}  // namespace

absl::StatusOr<Config> ParseConfigYaml(std::string_view yaml_text, std::string_view source) {
  return ParseConfigYaml(yaml_text, source, nullptr);
}

absl::StatusOr<Config> ParseConfigYaml(std::string_view yaml_text, std::string_view source,
                                       Config* as_written) {
  // Debian's absl has its own string_view type (ABSL_OPTION_USE_STD_STRING_VIEW
  // is 0), so the public std::string_view is converted once, here.
  const absl::string_view yaml(yaml_text.data(), yaml_text.size());
  const absl::string_view source_name(source.data(), source.size());
  // yaml-cpp reports syntax errors (and, being a C++ library, anything else)
  // by throwing; nothing may leave this function that way.
  try {
    return Parse(yaml, source_name, as_written);
  } catch (const YAML::Exception& e) {
    std::string where(source_name);
    if (!e.mark.is_null()) absl::StrAppend(&where, ":", e.mark.line + 1, ":", e.mark.column + 1);
    return absl::InvalidArgumentError(absl::StrCat(where, ": YAML syntax error: ", e.msg));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(source_name, ": out of memory parsing YAML"));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source_name, ": cannot parse: ", e.what()));
  } catch (...) {
    return absl::InvalidArgumentError(absl::StrCat(source_name, ": cannot parse"));
  }
}

absl::StatusOr<Config> LoadConfigFile(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (file == nullptr) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot open config file ", path));
  }
  std::string text;
  char buf[64 * 1024];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), file.get())) > 0) {
    text.append(buf, n);
    if (text.size() > kMaxConfigFileBytes) {
      return absl::FailedPreconditionError(absl::StrCat(
          path, ": config file is larger than ", kMaxConfigFileBytes >> 20, " MiB; wrong file?"));
    }
  }
  if (std::ferror(file.get())) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot read config file ", path));
  }
  return ParseConfigYaml(text, path);
}

}  // namespace postern::control
