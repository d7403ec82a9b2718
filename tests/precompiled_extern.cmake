# Test precompiled_instances_are_extern: the object file of a program compiled with
# MLNC_PRECOMPILED=1 must reference (not define) the instances that mlnc::precompiled holds.
#   cmake -DNM=<nm> -DOBJECTS=<object files> -P precompiled_extern.cmake
foreach(_v NM OBJECTS)
  if(NOT DEFINED ${_v})
    message(FATAL_ERROR "precompiled_extern.cmake: -D${_v}=... is required")
  endif()
endforeach()

execute_process(COMMAND ${NM} -C --undefined-only ${OBJECTS} OUTPUT_VARIABLE _undefined RESULT_VARIABLE _rc1)
execute_process(COMMAND ${NM} -C --defined-only ${OBJECTS} OUTPUT_VARIABLE _defined RESULT_VARIABLE _rc2)
if(NOT _rc1 EQUAL 0 OR NOT _rc2 EQUAL 0)
  message(FATAL_ERROR "${NM} failed on ${OBJECTS}")
endif()

# The entry points the research program reaches: trainer, objective, metrics, closed form, and the
# alignment check of include/mlnc/types.hpp.
set(_instances
  "mlnc::detail::run_training<double, mlnc::cpu>"
  "mlnc::pal_objective<double, mlnc::cpu>::evaluate_refs"
  "mlnc::detail::nc_metrics_from_means<double>"
  "mlnc::detail::class_means_of<double>"
  "mlnc::global_optimum<double>"
  "mlnc::detail::precompiled_library_has_eigen_max_align_bytes_")
foreach(_i IN LISTS _instances)
  string(FIND "${_undefined}" "${_i}" _u)
  string(FIND "${_defined}" "${_i}" _d)
  if(_u EQUAL -1)
    message(FATAL_ERROR "not referenced as an external symbol: ${_i}")
  endif()
  if(NOT _d EQUAL -1)
    message(FATAL_ERROR "compiled into the program instead of taken from mlnc::precompiled: ${_i}")
  endif()
  message(STATUS "extern: ${_i}")
endforeach()
