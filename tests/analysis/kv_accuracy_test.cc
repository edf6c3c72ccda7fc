// The KV accuracy measurement (src/analysis/kv_accuracy.cc) sees what it should:
// outlier K channels quantize better with per-channel scales.
#include "analysis/kv_accuracy.h"

#include <gtest/gtest.h>

#include "goldilocks/kv_cache.h"

namespace goldilocks::testing {
namespace {

using analysis::KvAccuracy;
using analysis::KvAccuracyRequest;
using analysis::measure_kv_accuracy;

// Outlier K channels (KIVI's motivation): per-channel scales give a smaller
// error than per-token scales against an f32 cache, through the same kernel.
TEST(DecodeChannelAccuracy, OutlierChannelsFavourPerChannelScales) {
  for (KvStorage st : {KvStorage::kInt8, KvStorage::kInt4}) {
    KvAccuracyRequest r;
    r.q_heads = 4, r.kv_heads = 2, r.keys = 300, r.head_dim = 64, r.seed = 4400;
    r.k_storage = st, r.v_storage = KvStorage::kFloat32;
    r.outlier_channels = 4, r.outlier_scale = 10.0f;
    KvAccuracy token, channel;
    ASSERT_TRUE(measure_kv_accuracy(r, &token).ok());
    r.k_scales = KvKScales::kPerChannel;
    ASSERT_TRUE(measure_kv_accuracy(r, &channel).ok());
    EXPECT_LT(channel.rel_l2, token.rel_l2) << kv_storage_name(st) << " seed 4400";
    EXPECT_LT(channel.kl_mean, token.kl_mean) << kv_storage_name(st) << " seed 4400";
  }
}

}  // namespace
}  // namespace goldilocks::testing
