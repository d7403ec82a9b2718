# Warnings and sanitizers for the project's own targets only (never global flags).

# -Wall -Wextra -Werror on a target of ours; dependencies come in as SYSTEM includes.
function(mlnc_strict_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Werror>
    $<$<COMPILE_LANGUAGE:CUDA>:-Werror=all-warnings -Xcompiler=-Wall,-Wextra,-Werror>)
endfunction()

# ASan + UBSan, failing on the first UBSan report.
function(mlnc_sanitize target)
  set(_flags -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${_flags} -O1>)
  target_link_options(${target} PRIVATE ${_flags})
endfunction()
