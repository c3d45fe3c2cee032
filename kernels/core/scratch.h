#pragma once
#include <cstddef>

namespace st {
// 64-byte aligned, per-thread, grow-only buffers. Slot numbers are fixed per use so nested
// users on one thread never share a slot. Returns null if the allocation fails.
enum ScratchSlot {
  kSlotLayout = 0,
  kSlotOffsets = 1,
  kSlotPlane = 2,
  kSlotTmp = 3,
  kSlotKernel = 4,
  kSlotTile = 5,
  kSlotColumns = 6,
  kSlotSegments = 7,
  kSlotValues = 8,
  kNumSlots = 9
};
void* scratch(int slot, size_t bytes);
}  // namespace st
