# cmake -DSOURCE_DIR=<mlnc> -DWORK_DIR=<scratch> -P run.cmake
# Builds and runs the consumer in this folder with mlnc's sources as a subdirectory (the install
# route is tested by readme.cmake, with the README's own commands).
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

include(${CMAKE_CURRENT_LIST_DIR}/common.cmake)

run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/package -B ${WORK_DIR}/consumer-build -DMLNC_SOURCE_DIR=${SOURCE_DIR})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer-build)
run(${WORK_DIR}/consumer-build/consumer)
