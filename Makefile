# mlnc: the two commands of the README. Both install what is missing, configure, build and run.
#   make demo   builds the mlnc program and runs `mlnc verify` with its defaults
#   make test   builds everything (plus ASan+UBSan variants of every test) and runs CTest
#   make fuzz   builds the libFuzzer targets with clang (ASan+UBSan) and runs each for
#               FUZZ_SECONDS (default 180); new inputs go to $(FUZZ_BUILD)/corpus, findings to
#               $(FUZZ_BUILD)/findings (see docs/robustness.md)
# Other targets: deps, build, bench, clean; gpu-deps (the headers bench/gpu_check.sh carries to a
# GPU machine, in .gpu-deps/).

BUILD      ?= build
BUILD_TYPE ?= Release
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=

DEB_PACKAGES := cmake make g++ libeigen3-dev libboost-dev catch2 libbenchmark-dev liblbfgspp-dev \
                libcli11-dev nlohmann-json3-dev gnuplot-nox
FUZZ_PACKAGES := clang-14 libclang-rt-14-dev
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 180
FUZZERS      := npy label_file specs label_sets

.PHONY: deps fuzz-deps configure build demo test bench fuzz clean gpu-deps

deps fuzz-deps: PACKAGES = $(if $(filter fuzz-deps,$@),$(DEB_PACKAGES) $(FUZZ_PACKAGES),$(DEB_PACKAGES))
deps fuzz-deps:
	@missing=""; \
	for p in $(PACKAGES); do \
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
	python3 bench/compare.py $(BUILD)/bench/mlnc_bench

fuzz: fuzz-deps
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++-14 \
	  -DMLNC_BUILD_FUZZERS=ON -DMLNC_BUILD_TESTS=OFF -DMLNC_BUILD_EXAMPLES=OFF -DMLNC_BUILD_BENCH=OFF
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target $(addprefix fuzz_,$(FUZZERS))
	@failed=""; for f in $(FUZZERS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$f $(FUZZ_BUILD)/findings/$$f; \
	  echo "mlnc: fuzzing $$f for $(FUZZ_SECONDS) s"; \
	  $(FUZZ_BUILD)/tests/fuzz/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=10 \
	    -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/findings/$$f/ \
	    $(FUZZ_BUILD)/corpus/$$f tests/fuzz/corpus/$$f > $(FUZZ_BUILD)/fuzz_$$f.log 2>&1 || failed="$$failed $$f"; \
	  grep -E "^(stat::number_of_executed_units|stat::new_units_added|stat::peak_rss_mb|==[0-9]+==ERROR|SUMMARY)" $(FUZZ_BUILD)/fuzz_$$f.log; \
	done; \
	if [ -n "$$failed" ]; then echo "mlnc: findings in:$$failed (inputs in $(FUZZ_BUILD)/findings/)"; exit 1; fi; \
	echo "mlnc: no findings"

gpu-deps: deps
	bench/gpu_deps.sh

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD)
