# SPDX-License-Identifier: BSD-3-Clause
# cmake -DCLI=path/to/vmdkit -DOUTPUT=file -P generate.cmake: write
# `vmdkit help --bash-completion` to OUTPUT, or fail (leaving no OUTPUT).
execute_process(COMMAND ${CLI} help --bash-completion
                OUTPUT_FILE ${OUTPUT}.tmp
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  file(REMOVE ${OUTPUT}.tmp)
  message(FATAL_ERROR "${CLI} help --bash-completion failed: ${rc}")
endif()
file(RENAME ${OUTPUT}.tmp ${OUTPUT})
