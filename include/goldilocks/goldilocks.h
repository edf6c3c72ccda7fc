// Umbrella header for the Goldilocks public API.
#pragma once

#include "goldilocks/attention.h"
#include "goldilocks/kv_cache.h"
#include "goldilocks/status.h"
#include "goldilocks/tensor.h"
