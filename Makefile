# mlnc: the two commands of the README. Both install what is missing, configure, build and run.
#   make demo   builds the mlnc program and runs `mlnc verify` with its defaults
#   make test   builds everything (plus ASan+UBSan variants of every test) and runs CTest
# Other targets: deps, build, bench, clean.

BUILD      ?= build
BUILD_TYPE ?= Release
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=

DEB_PACKAGES := cmake make g++ libeigen3-dev libboost-dev catch2 libbenchmark-dev liblbfgspp-dev \
                libcli11-dev nlohmann-json3-dev gnuplot-nox

.PHONY: deps configure build demo test bench clean

deps:
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "mlnc: installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else \
	    echo "mlnc: missing Debian packages. Install them with:"; \
	    echo "  sudo apt-get install -y$$missing"; \
	    exit 1; \
	  fi; \
	fi

configure: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DMLNC_SANITIZE=ON $(CMAKE_ARGS)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

demo: configure
	cmake --build $(BUILD) --target mlnc_cli -j $(JOBS)
	$(BUILD)/bin/mlnc verify

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

bench: configure
	cmake --build $(BUILD) --target mlnc_bench -j $(JOBS)
	$(BUILD)/bench/mlnc_bench

clean:
	rm -rf $(BUILD)
