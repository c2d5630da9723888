package attention

import "github.com/vkattn/vkattn/memory"

// QuantizedKVCacheParts exposes a QuantizedKVCache's two caches to the tests, which spend one's
// pages to make the second half of an append fail.
func QuantizedKVCacheParts(c *QuantizedKVCache) (codes, scales *memory.KVCache) {
	return c.codes, c.scales
}
