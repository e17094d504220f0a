# Run after linking a plugin (cmake -DPLUGIN=<file> -P CheckPluginElf.cmake): fails the build when the .so
# could never be unloaded, which would make hot reload keep running old code. STB_GNU_UNIQUE symbols (e.g. from
# a static library compiled without -fno-gnu-unique) and the NODELETE flag both make dlclose a no-op.
find_program(READELF readelf)
if(NOT READELF)
  return()
endif()
execute_process(COMMAND ${READELF} -W --dyn-syms ${PLUGIN} OUTPUT_VARIABLE syms RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "readelf failed on ${PLUGIN}")
endif()
string(REGEX MATCHALL "[^\n]* UNIQUE [^\n]*" unique "${syms}")
if(unique)
  message(FATAL_ERROR "${PLUGIN} has STB_GNU_UNIQUE symbols, so dlclose cannot unload it (hot reload would keep "
                      "the old code). Build every object it links with -fno-gnu-unique:\n${unique}")
endif()
execute_process(COMMAND ${READELF} -W -d ${PLUGIN} OUTPUT_VARIABLE dyn)
if(dyn MATCHES "NODELETE")
  message(FATAL_ERROR "${PLUGIN} is linked with -z nodelete, so it can never be unloaded")
endif()
