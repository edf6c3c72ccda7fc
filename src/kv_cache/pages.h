// The page pool of a KV cache and each sequence's block table and length.
//
// Memory: one pool of pages, allocated once. A page holds page_size tokens of
// every KV head: [K region: Hkv head regions][V rows: Hkv × page_size], each
// head's region consecutive so a decode streams it in order (long regions
// padded by a few cache lines: k/v_head_stride). What a K head region holds is
// the K store's business (k_store.h); V is always one row per token. The
// contiguous layout is the special case of one page of max_tokens per
// sequence, owned for life (block table = identity), so one kernel serves both.
//
// Paged pages are reference-counted: fork shares them and the first write to a
// shared page copies it (copy-on-write).
#pragma once

#include <cstdint>

#include "goldilocks/status.h"
#include "kv_cache/cache_plan.h"
#include "support/memory.h"

namespace goldilocks::kv {

class Pages {
 public:
  // Allocates the pool and tables of the plan; ok() tells whether it could.
  explicit Pages(const CachePlan& plan);
  bool ok() const;

  bool paged() const { return paged_; }
  int64_t page_size() const { return page_size_; }
  int64_t free_count() const { return free_count_; }
  int64_t length(int64_t seq) const { return lengths_[seq]; }
  void set_length(int64_t seq, int64_t n) { lengths_[seq] = n; }
  int64_t pages_held(int64_t seq) const { return (lengths_[seq] + page_size_ - 1) / page_size_; }
  int32_t& table(int64_t seq, int64_t page_index) const { return block_table_[seq * table_stride_ + page_index]; }

  // The start of head h's K region in the page holding token j of seq; the
  // token's offset inside it is the K store's (j % page_size() rows or groups).
  uint8_t* k_head(int64_t seq, int64_t h, int64_t j) const {
    return pool_.data() + table(seq, j / page_size_) * page_bytes_ + h * k_head_stride_;
  }
  uint8_t* v_row(int64_t seq, int64_t h, int64_t j) const {
    return pool_.data() + table(seq, j / page_size_) * page_bytes_ + k_region_bytes_ + h * v_head_stride_ +
           (j % page_size_) * v_row_bytes_;
  }
  int64_t v_row_bytes() const { return v_row_bytes_; }

  // Pages that writing token positions [from, to) of seq will take from the
  // pool: new pages past the held ones, plus one copy per shared page written.
  int64_t pages_needed(int64_t seq, int64_t from, int64_t to) const;
  // What pages_needed() overcounts for seq when sequences [first, seq) append
  // n tokens first (their copies of pages shared with seq drop references).
  int64_t shared_pages_freed_before(int64_t first, int64_t seq, int64_t n) const;
  // Makes the pages covering [from, to) exclusively seq's (copy-on-write) and
  // present. Callers have checked pages_needed() <= free_count().
  void own_pages(int64_t seq, int64_t from, int64_t to);
  // seq keeps its first new_length tokens: pages past them go back to the pool
  // (paged) and the length is set.
  void shrink(int64_t seq, int64_t new_length);
  // Paged: dst shares src's pages. Contiguous: false (the caller copies rows).
  bool share_pages(int64_t src, int64_t dst);

  // The raw buffers, for the decode kernel's view and the tests' snapshots.
  const support::TrackedBuffer<uint8_t>& pool() const { return pool_; }
  const support::TrackedBuffer<int32_t>& block_table() const { return block_table_; }
  const support::TrackedBuffer<int64_t>& lengths() const { return lengths_; }
  const support::TrackedBuffer<int32_t>& refcount() const { return refcount_; }
  const support::TrackedBuffer<int32_t>& free_list() const { return free_list_; }
  int64_t page_bytes() const { return page_bytes_; }
  int64_t k_region_bytes() const { return k_region_bytes_; }
  int64_t k_head_stride() const { return k_head_stride_; }
  int64_t v_head_stride() const { return v_head_stride_; }
  int64_t table_stride() const { return table_stride_; }
  int64_t num_pages() const { return num_pages_; }

 private:
  // Releases the pages of seq past the first keep_pages (paged; no-op for contiguous).
  void release_pages_from(int64_t seq, int64_t keep_pages);
  int32_t take_page();
  void release_page(int32_t page);
  bool appends_to_page(int64_t seq, int64_t i, int64_t n) const;

  bool paged_;
  int64_t page_size_, num_pages_, table_stride_, page_bytes_, k_region_bytes_;
  int64_t k_head_stride_, v_head_stride_, v_row_bytes_;
  support::TrackedBuffer<uint8_t> pool_;         // [num_pages][page_bytes]
  support::TrackedBuffer<int32_t> block_table_;  // [batch][table_stride], -1 = no page
  support::TrackedBuffer<int64_t> lengths_;      // [batch]
  support::TrackedBuffer<int32_t> refcount_;     // [num_pages]: sequences sharing the page (paged)
  support::TrackedBuffer<int32_t> free_list_;    // stack of free page ids (paged)
  int64_t free_count_ = 0;
};

}  // namespace goldilocks::kv
