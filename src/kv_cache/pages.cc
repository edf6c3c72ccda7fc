// Page bookkeeping of the paged layout; for the contiguous layout (one page
// per sequence, block table = identity) every operation here is a no-op.
#include "kv_cache/pages.h"

#include <algorithm>
#include <cstring>

namespace goldilocks::kv {

Pages::Pages(const CachePlan& p)
    : paged_(p.cfg.layout == KvLayout::kPaged),
      page_size_(p.page_size),
      num_pages_(p.num_pages),
      table_stride_(p.table_stride),
      page_bytes_(p.page_bytes),
      k_region_bytes_(p.k_region_bytes),
      k_head_stride_(p.k_head_stride),
      v_head_stride_(p.v_head_stride),
      v_row_bytes_(p.vf.row_bytes()),
      pool_(p.pool_bytes),
      block_table_(p.cfg.batch * p.table_stride),
      lengths_(p.cfg.batch) {
  if (paged_) {
    refcount_ = support::TrackedBuffer<int32_t>(num_pages_);
    free_list_ = support::TrackedBuffer<int32_t>(num_pages_);
  }
  if (!ok()) return;
  // Zeroed so snapshots of a fresh cache are deterministic.
  std::memset(pool_.data(), 0, static_cast<size_t>(p.pool_bytes));
  for (int64_t b = 0; b < p.cfg.batch; ++b) {
    lengths_[b] = 0;
    for (int64_t i = 0; i < table_stride_; ++i) table(b, i) = paged_ ? -1 : static_cast<int32_t>(b);
  }
  if (paged_) {
    // Stack of free pages, lowest id on top.
    for (int64_t i = 0; i < num_pages_; ++i) {
      refcount_[i] = 0;
      free_list_[i] = static_cast<int32_t>(num_pages_ - 1 - i);
    }
    free_count_ = num_pages_;
  }
}

bool Pages::ok() const { return pool_.ok() && block_table_.ok() && lengths_.ok() && refcount_.ok() && free_list_.ok(); }

int32_t Pages::take_page() {
  const int32_t page = free_list_[--free_count_];
  refcount_[page] = 1;
  return page;
}

void Pages::release_page(int32_t page) {
  if (--refcount_[page] == 0) free_list_[free_count_++] = page;
}

void Pages::release_pages_from(int64_t seq, int64_t keep_pages) {
  if (!paged_) return;
  for (int64_t i = keep_pages; i < table_stride_ && table(seq, i) >= 0; ++i) {
    release_page(table(seq, i));
    table(seq, i) = -1;
  }
}

void Pages::shrink(int64_t seq, int64_t new_length) {
  release_pages_from(seq, (new_length + page_size_ - 1) / page_size_);
  lengths_[seq] = new_length;
}

bool Pages::share_pages(int64_t src, int64_t dst) {
  if (!paged_) return false;
  // Referenced first, so a page dst already shares with src is never freed.
  for (int64_t i = 0; i < pages_held(src); ++i) ++refcount_[table(src, i)];
  release_pages_from(dst, 0);
  for (int64_t i = 0; i < pages_held(src); ++i) table(dst, i) = table(src, i);
  return true;
}

int64_t Pages::pages_needed(int64_t seq, int64_t from, int64_t to) const {
  if (!paged_ || from >= to) return 0;
  const int64_t held = pages_held(seq);
  const int64_t last = (to - 1) / page_size_;
  int64_t need = std::max<int64_t>(0, last + 1 - held);
  for (int64_t i = from / page_size_; i <= last && i < held; ++i) need += refcount_[table(seq, i)] > 1;
  return need;
}

// Whether sequence `seq` writes its page index i when n tokens are appended.
bool Pages::appends_to_page(int64_t seq, int64_t i, int64_t n) const {
  return n > 0 && i >= lengths_[seq] / page_size_ && i <= (lengths_[seq] + n - 1) / page_size_;
}

// Each earlier sequence that copies a page shared with seq drops its
// reference, and the last sharer left writes in place. Without this, fork +
// append of both sharers asked for a copy each and refused with pages to
// spare. Loops instead of a map: appending allocates nothing.
int64_t Pages::shared_pages_freed_before(int64_t first, int64_t seq, int64_t n) const {
  if (!paged_) return 0;
  int64_t freed = 0;
  const int64_t held = pages_held(seq);
  for (int64_t i = lengths_[seq] / page_size_; i < held && appends_to_page(seq, i, n); ++i) {
    const int32_t page = table(seq, i);
    const int32_t refs = refcount_[page];
    if (refs <= 1) continue;
    int64_t earlier = 0;  // writers of this page before seq, each one copy that drops a reference
    for (int64_t o = first; o < seq; ++o)
      for (int64_t oi = 0; oi < pages_held(o); ++oi) earlier += table(o, oi) == page && appends_to_page(o, oi, n);
    // Copies happen while refs - earlier > 1; past that seq owns the page.
    freed += refs - earlier <= 1;
  }
  return freed;
}

void Pages::own_pages(int64_t seq, int64_t from, int64_t to) {
  if (!paged_ || from >= to) return;
  const int64_t held = pages_held(seq);
  for (int64_t i = from / page_size_; i <= (to - 1) / page_size_; ++i) {
    if (i >= held) {
      table(seq, i) = take_page();
    } else if (refcount_[table(seq, i)] > 1) {
      const int32_t shared = table(seq, i), mine = take_page();
      std::memcpy(pool_.data() + mine * page_bytes_, pool_.data() + shared * page_bytes_,
                  static_cast<size_t>(page_bytes_));
      release_page(shared);
      table(seq, i) = mine;
    }
  }
}

}  // namespace goldilocks::kv
