# The targets the README names.
.PHONY: build test demo bench clean

build:
	go build -o bin/berth ./cmd/berth

test:
	bash hack/test.sh

demo: build
	bash hack/demo.sh

bench: build
	go run ./bench -out bench/results

clean:
	rm -rf bin
