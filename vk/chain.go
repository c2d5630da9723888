package vk

/*
#include <stdlib.h>
#include <string.h>
*/
import "C"

import (
	"encoding/binary"
	"unsafe"
)

// chain is a pNext chain of Vulkan structures laid out in C memory. Each link is raw bytes whose
// first 16 bytes are sType and pNext; the rest is read and written at field offsets taken from
// the Vulkan specification. This is how vk reaches structures the binding lacks or that are
// newer than its headers, with no Vulkan headers at build time.
type chain struct {
	links []unsafe.Pointer
	sizes []int
}

// add appends a zeroed structure of size bytes with the given sType and returns its index.
func (c *chain) add(sType uint32, size int) int {
	p := C.calloc(1, C.size_t(size))
	*(*uint32)(p) = sType
	if n := len(c.links); n > 0 {
		*(*unsafe.Pointer)(unsafe.Add(c.links[n-1], 8)) = p
	}
	c.links = append(c.links, p)
	c.sizes = append(c.sizes, size)
	return len(c.links) - 1
}

// head is the first structure, to pass to the query or as a pNext.
func (c *chain) head() unsafe.Pointer {
	if len(c.links) == 0 {
		return nil
	}
	return c.links[0]
}

func (c *chain) bytes(i int) []byte { return unsafe.Slice((*byte)(c.links[i]), c.sizes[i]) }

func (c *chain) u32(i, off int) uint32 { return binary.LittleEndian.Uint32(c.bytes(i)[off:]) }
func (c *chain) u64(i, off int) uint64 { return binary.LittleEndian.Uint64(c.bytes(i)[off:]) }
func (c *chain) setU32(i, off int, v uint32) {
	binary.LittleEndian.PutUint32(c.bytes(i)[off:], v)
}

// str reads a NUL-terminated char array of at most n bytes at off.
func (c *chain) str(i, off, n int) string {
	b := c.bytes(i)[off : off+n]
	for j, x := range b {
		if x == 0 {
			return string(b[:j])
		}
	}
	return string(b)
}

// bools reads n consecutive VkBool32 fields starting after the 16-byte header.
func (c *chain) bools(i, n int) []bool {
	out := make([]bool, n)
	for j := range out {
		out[j] = c.u32(i, 16+4*j) != 0
	}
	return out
}

func (c *chain) free() {
	for _, p := range c.links {
		C.free(p)
	}
	c.links, c.sizes = nil, nil
}
