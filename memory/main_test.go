package memory

import (
	"os"
	"testing"

	"github.com/vkattn/vkattn/vk"
)

// TestMain keeps one Vulkan instance open while the tests, each with instances of its own, run:
// destroying the last instance lets the loader unload the driver, and lavapipe reloaded now and
// then corrupts its heap (seen as an abort in vkCreateInstance). Where no instance opens, the
// tests run as they would without it and report that themselves.
func TestMain(m *testing.M) {
	in, err := vk.NewInstance(vk.InstanceOptions{})
	code := m.Run()
	if err == nil {
		in.Close()
	}
	os.Exit(code)
}
