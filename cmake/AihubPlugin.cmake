# aihub_add_plugin(<target> SOURCES <src>... [OUTPUT_DIRECTORY <dir>] [LINK <libs>...])
#
# Builds a drop-in aihub plugin: a MODULE library named <target>.so that exports only the aihub_plugin_*
# entry points. Hidden visibility and a linker version script keep every other symbol local, and
# -fno-gnu-unique stops the compiler from emitting STB_GNU_UNIQUE symbols (which pin a library in memory and
# turn dlclose into a no-op, so a hot reload of the same path would run the old code).
set(AIHUB_PLUGIN_VERSION_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/../plugin_api/aihub_plugin.map CACHE INTERNAL "")
set(AIHUB_PLUGIN_ELF_CHECK ${CMAKE_CURRENT_LIST_DIR}/CheckPluginElf.cmake CACHE INTERNAL "")

function(aihub_add_plugin target)
  cmake_parse_arguments(ARG "" "OUTPUT_DIRECTORY" "SOURCES;LINK" ${ARGN})
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "aihub_add_plugin(${target}): SOURCES is required")
  endif()
  if(NOT ARG_OUTPUT_DIRECTORY)
    set(ARG_OUTPUT_DIRECTORY ${AIHUB_PLUGIN_OUTPUT_DIRECTORY})
  endif()
  add_library(${target} MODULE ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE aihub::plugin_api ${ARG_LINK})
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    LIBRARY_OUTPUT_DIRECTORY ${ARG_OUTPUT_DIRECTORY})
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-fno-gnu-unique -Wall -Wextra>
    $<$<COMPILE_LANGUAGE:C>:-Wall -Wextra>)
  target_link_options(${target} PRIVATE
    -Wl,--version-script=${AIHUB_PLUGIN_VERSION_SCRIPT} -Wl,--no-undefined -Wl,-z,now)
  set_property(TARGET ${target} APPEND PROPERTY LINK_DEPENDS ${AIHUB_PLUGIN_VERSION_SCRIPT})
  # A plugin that can never be unloaded fails the build instead of silently breaking hot reload.
  add_custom_command(TARGET ${target} POST_BUILD
    COMMAND ${CMAKE_COMMAND} -DPLUGIN=$<TARGET_FILE:${target}> -P ${AIHUB_PLUGIN_ELF_CHECK}
    VERBATIM)
endfunction()
