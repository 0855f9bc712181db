#include "common/metric_region.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace postern::metrics {

absl::StatusOr<std::unique_ptr<MetricRegion>> MetricRegion::Create() {
  int fd = memfd_create("postern-metrics", MFD_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, "memfd_create");
  if (ftruncate(fd, static_cast<off_t>(RegionBytes())) != 0) {
    int e = errno;
    close(fd);
    return absl::ErrnoToStatus(e, "ftruncate metrics region");
  }
  void* base = mmap(nullptr, RegionBytes(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    int e = errno;
    close(fd);
    return absl::ErrnoToStatus(e, "mmap metrics region");
  }
  auto* header = static_cast<RegionHeader*>(base);
  header->magic = kRegionMagic;
  header->layout_hash = LayoutHash();
  header->slot_count = TotalSlots();
  return std::unique_ptr<MetricRegion>(new MetricRegion(fd, base));
}

absl::StatusOr<std::unique_ptr<MetricRegion>> MetricRegion::Attach(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return absl::ErrnoToStatus(e, "fstat metrics fd");
  }
  if (static_cast<size_t>(st.st_size) != RegionBytes()) {
    close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat("metrics region is ", st.st_size, " bytes, expected ", RegionBytes()));
  }
  void* base = mmap(nullptr, RegionBytes(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    int e = errno;
    close(fd);
    return absl::ErrnoToStatus(e, "mmap metrics region");
  }
  const auto* header = static_cast<const RegionHeader*>(base);
  if (header->magic != kRegionMagic || header->layout_hash != LayoutHash()) {
    munmap(base, RegionBytes());
    close(fd);
    return absl::FailedPreconditionError("metrics region layout differs (mixed binaries?)");
  }
  return std::unique_ptr<MetricRegion>(new MetricRegion(fd, base));
}

MetricRegion::MetricRegion(int fd, void* base)
    : fd_(fd),
      base_(base),
      slots_(reinterpret_cast<uint64_t*>(static_cast<char*>(base) + sizeof(RegionHeader))) {}

MetricRegion::~MetricRegion() {
  munmap(base_, RegionBytes());
  close(fd_);
}

uint64_t MetricRegion::Load(size_t slot) const {
  return std::atomic_ref<uint64_t>(slots_[slot]).load(std::memory_order_relaxed);
}

void MetricRegion::Store(size_t slot, uint64_t v) {
  std::atomic_ref<uint64_t>(slots_[slot]).store(v, std::memory_order_relaxed);
}

static size_t ClampLabel(MetricId id, size_t label) {
  size_t n = LabelCardinality(MetricDefs()[id].label);
  return label < n ? label : n - 1;
}

void MetricRegion::Add(MetricId id, size_t label, uint64_t delta) {
  size_t s = SlotOffset(id, ClampLabel(id, label));
  Store(s, Load(s) + delta);
}

void MetricRegion::Set(MetricId id, size_t label, uint64_t value) {
  Store(SlotOffset(id, ClampLabel(id, label)), value);
}

void MetricRegion::Observe(MetricId id, size_t label, double value) {
  std::span<const double> bounds = BucketBounds(MetricDefs()[id].buckets);
  size_t base = SlotOffset(id, ClampLabel(id, label));
  size_t b = 0;
  while (b < bounds.size() && value > bounds[b]) ++b;
  Store(base + b, Load(base + b) + 1);
  size_t sum_slot = base + bounds.size() + 1;
  Store(sum_slot, std::bit_cast<uint64_t>(std::bit_cast<double>(Load(sum_slot)) + value));
  Store(sum_slot + 1, Load(sum_slot + 1) + 1);
}

uint64_t MetricRegion::Get(MetricId id, size_t label) const {
  return Load(SlotOffset(id, ClampLabel(id, label)));
}

uint64_t MetricRegion::Bucket(MetricId id, size_t label, size_t i) const {
  return Load(SlotOffset(id, ClampLabel(id, label)) + i);
}

double MetricRegion::Sum(MetricId id, size_t label) const {
  size_t n = BucketBounds(MetricDefs()[id].buckets).size();
  return std::bit_cast<double>(Load(SlotOffset(id, ClampLabel(id, label)) + n + 1));
}

uint64_t MetricRegion::Count(MetricId id, size_t label) const {
  size_t n = BucketBounds(MetricDefs()[id].buckets).size();
  return Load(SlotOffset(id, ClampLabel(id, label)) + n + 2);
}

}  // namespace postern::metrics
