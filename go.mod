module github.com/vkattn/vkattn

go 1.26

require (
	github.com/goki/vulkan v1.0.8
	github.com/stretchr/testify v1.12.1
)

require go.yaml.in/yaml/v3 v3.0.5 // indirect
