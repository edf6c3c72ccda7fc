// Accuracy of quantized KV storage, measured (`goldilocks kv-accuracy`, the
// search's error axis for KV formats): a measurement, so it lives in the
// measurement library, not in the attention library it measures.
#pragma once

#include <cstdint>

#include "goldilocks/kv_cache.h"
#include "goldilocks/status.h"

namespace goldilocks::analysis {

// Accuracy of quantized storage against an f32 cache on the same Gaussian
// inputs (both attended through the same kernel), for `goldilocks kv-accuracy`.
struct KvAccuracyRequest {
  int64_t batch = 1, q_heads = 32, kv_heads = 8, queries = 1, keys = 4096, head_dim = 128;
  KvStorage k_storage = KvStorage::kInt8, v_storage = KvStorage::kInt8;
  int64_t k_group_size = 0, v_group_size = 0;
  KvKScales k_scales = KvKScales::kPerToken;
  int64_t k_channel_tokens = 0;
  // K channels 0..outlier_channels-1 are multiplied by outlier_scale (the
  // outlier channels of real keys that motivate KIVI's per-channel scales).
  int64_t outlier_channels = 0;
  float outlier_scale = 10.0f;
  uint64_t seed = 1;
  int num_threads = 0;
};
struct KvAccuracy {
  double max_abs = 0;  // max |out_quant - out_f32|
  double rel_l2 = 0;   // ||out_quant - out_f32||_2 / ||out_f32||_2
  double kl_mean = 0;  // mean over rows of KL(p_f32 || p_quant), attention weights, nats
  double kl_max = 0;
};
Status measure_kv_accuracy(const KvAccuracyRequest& request, KvAccuracy* result);

}  // namespace goldilocks::analysis
