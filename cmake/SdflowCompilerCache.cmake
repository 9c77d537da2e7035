# ccache keeps CI and repeated local builds fast; it is optional.
find_program(SDFLOW_CCACHE ccache)
if(SDFLOW_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${SDFLOW_CCACHE})
  # PCH and ccache only cooperate when ccache may ignore the PCH timestamps.
  set(ENV{CCACHE_SLOPPINESS} "pch_defines,time_macros,include_file_mtime,include_file_ctime")
endif()
