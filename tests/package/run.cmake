# cmake -DMODE=install|subdirectory -DSOURCE_DIR=<mlnc> -DWORK_DIR=<scratch> -P run.cmake
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGV}")
  endif()
endfunction()

set(consumer ${SOURCE_DIR}/tests/package)
if(MODE STREQUAL "install")
  # Install only the library (no tests/examples), then build the consumer against it.
  run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/mlnc-build -DMLNC_BUILD_TESTS=OFF
      -DMLNC_BUILD_EXAMPLES=OFF -DMLNC_BUILD_BENCH=OFF -DMLNC_ENABLE_CUDA=OFF)
  run(${CMAKE_COMMAND} --install ${WORK_DIR}/mlnc-build --prefix ${WORK_DIR}/prefix)
  run(${CMAKE_COMMAND} -S ${consumer} -B ${WORK_DIR}/consumer-build -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
elseif(MODE STREQUAL "subdirectory")
  run(${CMAKE_COMMAND} -S ${consumer} -B ${WORK_DIR}/consumer-build -DMLNC_SOURCE_DIR=${SOURCE_DIR})
else()
  message(FATAL_ERROR "MODE must be install or subdirectory")
endif()
run(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer-build)
run(${WORK_DIR}/consumer-build/consumer)
