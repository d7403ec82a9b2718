# cmake -DSOURCE_DIR=<mlnc> -DWORK_DIR=<scratch> -P readme.cmake
# Installs mlnc and builds a consumer exactly as README.md says: the blocks after the markers
# `<!-- package-test: NAME -->` are the commands (install, build) and the consumer's files
# (consumer CMakeLists.txt, my_experiment.cpp). They run in WORK_DIR, with HOME=WORK_DIR/home and
# the folder `mlnc` a link to this checkout, then the program is run.
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR}/home ${WORK_DIR}/my_experiment)
file(CREATE_LINK ${SOURCE_DIR} ${WORK_DIR}/mlnc SYMBOLIC)
file(READ ${SOURCE_DIR}/README.md readme)

# The fenced block that follows `<!-- package-test: NAME -->`.
function(readme_block name out)
  string(FIND "${readme}" "<!-- package-test: ${name} -->\n```" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "README.md: no block marked `package-test: ${name}`")
  endif()
  string(SUBSTRING "${readme}" ${at} -1 rest)
  string(FIND "${rest}" "\n" eol)  # end of the marker line
  math(EXPR eol "${eol} + 1")
  string(SUBSTRING "${rest}" ${eol} -1 rest)
  string(FIND "${rest}" "\n" eol)  # end of the ```lang line
  math(EXPR eol "${eol} + 1")
  string(SUBSTRING "${rest}" ${eol} -1 rest)
  string(FIND "${rest}" "```" end)
  string(SUBSTRING "${rest}" 0 ${end} block)
  set(${out} "${block}" PARENT_SCOPE)
endfunction()

readme_block("install" install_commands)
readme_block("build" build_commands)
readme_block("consumer CMakeLists.txt" consumer_cmake)
readme_block("my_experiment.cpp" consumer_cpp)
file(WRITE ${WORK_DIR}/my_experiment/CMakeLists.txt "${consumer_cmake}")
file(WRITE ${WORK_DIR}/my_experiment/my_experiment.cpp "${consumer_cpp}")
file(WRITE ${WORK_DIR}/readme.sh "set -eux\nexport HOME='${WORK_DIR}/home'\ncd '${WORK_DIR}'\n"
     "${install_commands}${build_commands}./my_experiment/build/my_experiment\n")
execute_process(COMMAND bash ${WORK_DIR}/readme.sh RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the README's install and build commands failed (${rc}); see ${WORK_DIR}/readme.sh")
endif()
