# cmake -DSOURCE_DIR=<mlnc> -DWORK_DIR=<scratch> -DCUDA_COMPILER=<nvcc> -P cuda.cmake
# Installs mlnc with its CUDA backend into a scratch prefix and builds and runs the CUDA consumer
# in tests/package/cuda against it.
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

include(${CMAKE_CURRENT_LIST_DIR}/common.cmake)

run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/mlnc-build -DCMAKE_BUILD_TYPE=Release -DMLNC_BUILD_TESTS=OFF
    -DMLNC_BUILD_EXAMPLES=OFF -DMLNC_BUILD_BENCH=OFF -DMLNC_BUILD_PRECOMPILED=OFF -DMLNC_ENABLE_CUDA=ON
    -DCMAKE_CUDA_COMPILER=${CUDA_COMPILER})
run(${CMAKE_COMMAND} --install ${WORK_DIR}/mlnc-build --prefix ${WORK_DIR}/prefix)
file(GLOB _cuda_targets ${WORK_DIR}/prefix/lib*/cmake/mlnc/mlncCudaTargets.cmake)
if(NOT _cuda_targets)
  message(FATAL_ERROR "mlnc::cuda was not installed (no mlncCudaTargets.cmake)")
endif()
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/package/cuda -B ${WORK_DIR}/consumer-build -DCMAKE_BUILD_TYPE=Release
    -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_CUDA_COMPILER=${CUDA_COMPILER} -DCMAKE_CUDA_ARCHITECTURES=90)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer-build)
run(${WORK_DIR}/consumer-build/cuda_consumer)
