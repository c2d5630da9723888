package vk_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/internal/testenv"
	"github.com/vkattn/vkattn/vk"
)

// emptyCompute is the SPIR-V of the smallest compute shader: an empty main with local size 1.
//
//	OpCapability Shader
//	OpMemoryModel Logical GLSL450
//	OpEntryPoint GLCompute %1 "main"
//	OpExecutionMode %1 LocalSize 1 1 1
//	%2 = OpTypeVoid
//	%3 = OpTypeFunction %2
//	%1 = OpFunction %2 None %3
//	%4 = OpLabel
//	OpReturn
//	OpFunctionEnd
func emptyCompute() []byte {
	words := []uint32{
		0x07230203, 0x00010000, 0, 5, 0, // magic, SPIR-V 1.0, generator, bound, schema
		2<<16 | 17, 1, // OpCapability Shader
		3<<16 | 14, 0, 1, // OpMemoryModel Logical GLSL450
		5<<16 | 15, 5, 1, 0x6e69616d, 0, // OpEntryPoint GLCompute %1 "main"
		6<<16 | 16, 1, 17, 1, 1, 1, // OpExecutionMode %1 LocalSize 1 1 1
		2<<16 | 19, 2, // OpTypeVoid
		3<<16 | 33, 3, 2, // OpTypeFunction
		5<<16 | 54, 2, 1, 0, 3, // OpFunction
		2<<16 | 248, 4, // OpLabel
		1<<16 | 253, // OpReturn
		1<<16 | 56,  // OpFunctionEnd
	}
	b := make([]byte, 4*len(words))
	for i, w := range words {
		binary.LittleEndian.PutUint32(b[4*i:], w)
	}
	return b
}

func openDeviceWith(t *testing.T, in *vk.Instance, opts vk.DeviceOptions) *vk.Device {
	t.Helper()
	infos, err := in.PhysicalDevices()
	require.NoError(t, err)
	if len(infos) == 0 {
		testenv.NoDevice(t, vk.ErrNoDevice)
	}
	d, err := in.OpenDevice(0, opts)
	require.NoError(t, err)
	return d
}

// checkCacheHeader checks data starts with a VK_PIPELINE_CACHE_HEADER_VERSION_ONE header for
// the device and returns the header's size.
func checkCacheHeader(t *testing.T, data []byte, info *vk.PhysicalInfo) int {
	t.Helper()
	require.GreaterOrEqual(t, len(data), 32, "pipeline cache shorter than its header")
	le := binary.LittleEndian
	size := int(le.Uint32(data))
	require.GreaterOrEqual(t, size, 32, "header size")
	require.LessOrEqual(t, size, len(data), "header size")
	require.Equal(t, uint32(1), le.Uint32(data[4:]), "header version")
	require.Equal(t, info.VendorID, le.Uint32(data[8:]), "vendor ID")
	require.Equal(t, info.DeviceID, le.Uint32(data[12:]), "device ID")
	require.Equal(t, info.PipelineCacheUUID[:], data[16:32], "pipeline cache UUID")
	return size
}

func TestPipelineCacheFile(t *testing.T) {
	in := testenv.Instance(t)
	file := filepath.Join(t.TempDir(), "sub", "pipelines.cache") // Close creates the directory
	spec := vk.PipelineSpec{Name: "empty", SPIRV: emptyCompute()}

	d := openDeviceWith(t, in, vk.DeviceOptions{PipelineCacheFile: file})
	info := *d.Info()
	p, err := d.NewPipeline(spec)
	require.NoError(t, err)
	p.Close()
	d.Close()
	first, err := os.ReadFile(file)
	require.NoError(t, err, "Close did not write the pipeline cache")
	header := checkCacheHeader(t, first, &info)
	t.Logf("pipeline cache: %d bytes, header %d", len(first), header)
	_, err = os.Stat(file + ".tmp")
	require.True(t, os.IsNotExist(err), "temporary file left behind: %v", err)

	// Reopened, the device loads the file: closing it without building anything writes back
	// the same entries, where a cache that failed to load would be written back empty.
	d = openDeviceWith(t, in, vk.DeviceOptions{PipelineCacheFile: file})
	d.Close()
	second, err := os.ReadFile(file)
	require.NoError(t, err)
	checkCacheHeader(t, second, &info)
	if len(first) > header {
		require.Equal(t, len(first), len(second), "reloaded cache lost entries")
	} else {
		require.Equal(t, first, second) // a driver that caches nothing (lavapipe) writes the header only
	}

	// Corrupt files (garbage, a truncated header, a header for another device) are tolerated:
	// the device opens with an empty cache, builds, and writes a good cache back.
	other := append([]byte(nil), first...)
	other[16] ^= 0xff // another pipelineCacheUUID
	for name, data := range map[string][]byte{
		"garbage":   bytes.Repeat([]byte("not a pipeline cache "), 20),
		"truncated": first[:10],
		"other":     other,
		"empty":     {},
	} {
		require.NoError(t, os.WriteFile(file, data, 0o644))
		d = openDeviceWith(t, in, vk.DeviceOptions{PipelineCacheFile: file})
		p, err := d.NewPipeline(spec)
		require.NoError(t, err, name)
		p.Close()
		d.Close()
		got, err := os.ReadFile(file)
		require.NoError(t, err, name)
		checkCacheHeader(t, got, &info)
	}
	testenv.CheckValidation(t, in)
}

// TestLoaderMissingLibrary: VKATTN_VULKAN_LIB naming a file that does not exist makes Load and
// NewInstance fail with ErrNoVulkan and a message naming the file. The loader is loaded once per
// process, so this runs in a child process.
func TestLoaderMissingLibrary(t *testing.T) {
	const lib = "/nonexistent/vkattn-test/libvulkan-missing.so.1"
	if !testenv.IsChild(t) {
		out := testenv.RunChild(t, vk.LibraryEnv+"="+lib)
		require.Contains(t, out, "--- PASS: "+t.Name(), "child output:\n%s", out)
		return
	}
	require.Equal(t, lib, os.Getenv(vk.LibraryEnv))
	err := vk.Load()
	require.Error(t, err)
	require.True(t, errors.Is(err, vk.ErrNoVulkan), "%v", err)
	require.Contains(t, err.Error(), lib)
	require.Contains(t, err.Error(), vk.LibraryEnv)
	_, err = vk.NewInstance(vk.InstanceOptions{})
	require.ErrorIs(t, err, vk.ErrNoVulkan)
	require.False(t, vk.LayerAvailable(vk.ValidationLayer))
}

const lpWidthEnv = "LP_NATIVE_VECTOR_WIDTH"

func isLlvmpipe(info *vk.PhysicalInfo) bool {
	return info.DriverName == "llvmpipe" || strings.HasPrefix(info.Name, "llvmpipe")
}

// TestLavapipeSubgroupWidth: on llvmpipe the subgroup size is LP_NATIVE_VECTOR_WIDTH/32, so the
// Makefile's width loop really runs the kernels at 4, 8 and 16 lanes. With the variable set,
// this checks that width; without, it checks each of the Makefile's widths in a child process.
func TestLavapipeSubgroupWidth(t *testing.T) {
	_, d := openDevice(t)
	info := d.Info()
	if !isLlvmpipe(info) {
		t.Skipf("%s is not llvmpipe", info.Name)
	}
	if w := os.Getenv(lpWidthEnv); w != "" {
		width, err := strconv.Atoi(w)
		require.NoError(t, err, "%s=%q", lpWidthEnv, w)
		t.Logf("%s=%d: %s, subgroup %d [%d,%d]", lpWidthEnv, width, info.Name, info.SubgroupSize,
			info.MinSubgroupSize, info.MaxSubgroupSize)
		require.Equal(t, uint32(width/32), info.SubgroupSize, "%s=%d", lpWidthEnv, width)
		require.LessOrEqual(t, info.MinSubgroupSize, info.SubgroupSize)
		require.GreaterOrEqual(t, info.MaxSubgroupSize, info.SubgroupSize)
		return
	}
	for _, width := range []int{128, 256, 512} { // LP_WIDTHS in the Makefile
		out := testenv.RunChild(t, lpWidthEnv+"="+strconv.Itoa(width))
		require.Contains(t, out, "--- PASS: "+t.Name(), "%s=%d, child output:\n%s", lpWidthEnv, width, out)
	}
}

// TestPipelineStatistics: with DeviceOptions.PipelineStatistics, a device that offers
// VK_KHR_pipeline_executable_properties reports each pipeline's executables with named
// statistics; one that does not (lavapipe) says which extension is missing, and so does a device
// opened without the option.
func TestPipelineStatistics(t *testing.T) {
	in := testenv.Instance(t)
	spec := vk.PipelineSpec{Name: "empty", SPIRV: emptyCompute()}
	for _, on := range []bool{false, true} {
		d := openDeviceWith(t, in, vk.DeviceOptions{PipelineStatistics: on})
		p, err := d.NewPipeline(spec)
		require.NoError(t, err)
		exes, err := p.Executables()
		if on && d.Info().Features.PipelineExecutableInfo {
			require.NoError(t, err)
			require.NotEmpty(t, exes)
			for _, x := range exes {
				require.NotEmpty(t, x.Name)
				for _, s := range x.Statistics {
					require.NotEmpty(t, s.Name)
				}
				t.Logf("%s (%s): %+v", x.Name, x.Description, x.Statistics)
			}
		} else {
			require.ErrorContains(t, err, vk.ExtPipelineExecutableProperties)
			require.Nil(t, exes)
		}
		p.Close()
		_, err = p.Executables()
		require.ErrorIs(t, err, vk.ErrClosed)
		d.Close()
	}
	testenv.CheckValidation(t, in)
}
