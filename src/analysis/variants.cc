#include "analysis/variants.h"

#include <algorithm>

#include "analysis/harness.h"

namespace goldilocks::analysis {

Status attach_variant(const CaseSpec& c, const float* k, const float* v, AttentionParams* p, VariantState* state) {
  if (c.mask != "none") {
    if (c.causal != CausalAlign::kNone) {
      return InvalidArgument("causal: with a mask spec, put causal in the mask (e.g. \"causal+window:256\") and set causal = \"none\"");
    }
    auto mods = std::make_shared<FlexMods>();
    GOLDILOCKS_RETURN_IF_ERROR(compile_flex_spec(c.mask, mods.get()));
    p->flex = mods.get();
    state->flex = mods;
  }
  if (c.kv_layout != "none") {
    KvCacheConfig cfg;
    cfg.batch = c.B;
    cfg.kv_heads = c.Hkv;
    cfg.head_dim_k = c.Dk;
    cfg.head_dim_v = c.Dv;
    cfg.max_tokens = c.Nk;
    if (c.kv_layout.rfind("paged:", 0) == 0) {
      cfg.layout = KvLayout::kPaged;
      cfg.page_size = std::stoll(c.kv_layout.substr(6));
    }
    const size_t colon = c.kv_storage.find(':');
    const std::string ks = c.kv_storage.substr(0, colon);
    const std::string vs = colon == std::string::npos ? ks : c.kv_storage.substr(colon + 1);
    if (!parse_kv_storage(ks.c_str(), &cfg.k_storage) || !parse_kv_storage(vs.c_str(), &cfg.v_storage)) {
      return InvalidArgument("kv_storage: \"" + c.kv_storage + "\" is not f32, f16, bf16, int8, int4 or a K:V pair");
    }
    std::unique_ptr<KvCache> cache;
    GOLDILOCKS_RETURN_IF_ERROR(KvCache::create(cfg, &cache));
    GOLDILOCKS_RETURN_IF_ERROR(cache->append_all(make_view(k, {c.B, c.Hkv, c.Nk, c.Dk}),
                                                 make_view(v, {c.B, c.Hkv, c.Nk, c.Dv})));
    state->cache_bytes = cache->bytes();
    state->cache_read_bytes = kv_token_bytes(cache->config()) * c.B * c.Hkv * c.Nk;
    p->kv_cache = cache.get();
    p->k = TensorView{};
    p->v = TensorView{};
    state->cache = std::move(cache);
  }
  return Status::Ok();
}

void copy_mask_mods(const AttentionParams& from, AttentionParams* to) { to->flex = from.flex; }

double visible_entries_with_mask(const CaseSpec& c, const VariantState& state) {
  if (state.flex) {
    const FlexMods& mods = *state.flex;
    const FlexFns& f = mods.fns();
    if (!f.mask_tile) return double(c.Nq) * double(c.Nk);  // a score_mod alone hides nothing
    const FlexCall call{c.B, c.Hq, c.Nq, c.Nk};
    const int64_t nb = mods.deps().batch ? c.B : 1, nh = mods.deps().head ? c.Hq : 1;
    constexpr int64_t kBlock = 64;
    double total = 0;
    for (int64_t b = 0; b < nb; ++b) {
      for (int64_t h = 0; h < nh; ++h) {
        for (int64_t i0 = 0; i0 < c.Nq; i0 += kBlock) {
          for (int64_t j0 = 0; j0 < c.Nk; j0 += kBlock) {
            const FlexTile t{call, b, h, i0, std::min(kBlock, c.Nq - i0), j0, std::min(kBlock, c.Nk - j0)};
            const FlexBlock kind = f.classify ? f.classify(mods.state(), t) : FlexBlock::kPartial;
            if (kind == FlexBlock::kEmpty) continue;
            if (kind == FlexBlock::kFull) {
              total += double(t.rows) * double(t.cols);
              continue;
            }
            for (int64_t i = i0; i < i0 + t.rows; ++i)
              for (int64_t j = j0; j < j0 + t.cols; ++j) total += f.mask_at(mods.state(), call, b, h, i, j) ? 1 : 0;
          }
        }
      }
    }
    return total / double(nb * nh);
  }
  return visible_entries(c);
}

}  // namespace goldilocks::analysis
