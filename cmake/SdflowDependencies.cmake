# Every dependency comes from a system package through find_package: nothing is vendored or
# downloaded. On the GPU machine CMAKE_PREFIX_PATH points at the CUDA libtorch of PyTorch.
find_package(Threads REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(spdlog REQUIRED)
find_package(fmt REQUIRED)
find_package(PNG REQUIRED)
find_package(JPEG REQUIRED)
# jpeglib.h takes JPEG_LIB_VERSION (the struct layouts) from jconfig.h in the multiarch folder.
# Where libjpeg comes from another prefix than the system's (the GPU machine carries Debian's
# libjpeg62 beside Ubuntu's libjpeg-turbo 8), that folder must be the prefix's own, or the
# headers describe one library and the program loads the other ("Wrong JPEG library version").
if(CMAKE_LIBRARY_ARCHITECTURE AND NOT JPEG_INCLUDE_DIR STREQUAL "/usr/include"
   AND EXISTS "${JPEG_INCLUDE_DIR}/${CMAKE_LIBRARY_ARCHITECTURE}/jconfig.h")
  set_property(TARGET JPEG::JPEG APPEND PROPERTY INTERFACE_INCLUDE_DIRECTORIES
               "${JPEG_INCLUDE_DIR}/${CMAKE_LIBRARY_ARCHITECTURE}")
endif()
find_package(ZLIB REQUIRED)
find_package(Torch REQUIRED)
if(SDFLOW_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()

# Torch's CMake config adds its flags to TORCH_CXX_FLAGS (the ABI define); turn them into an
# interface target so only torch-using targets see them.
if(NOT TARGET sdflow_torch)
  add_library(sdflow_torch INTERFACE)
  # spdlog/fmt first: the PyTorch wheel ships fmt 11 headers that break Debian's spdlog (GPU.md).
  # Linking first is not enough: include directories of a target's own come before those of its
  # dependencies, so Debian's spdlog/fmt headers are put in front of torch's explicitly. Mixing
  # the two fmt versions compiles but crashes at run time (ODR).
  set(_sdflow_first_includes "")
  foreach(_dep spdlog::spdlog fmt::fmt)
    get_target_property(_inc ${_dep} INTERFACE_INCLUDE_DIRECTORIES)
    if(_inc)
      list(APPEND _sdflow_first_includes ${_inc})
    endif()
  endforeach()
  target_include_directories(sdflow_torch SYSTEM BEFORE INTERFACE ${_sdflow_first_includes})
  target_link_libraries(sdflow_torch INTERFACE spdlog::spdlog fmt::fmt ${TORCH_LIBRARIES})
  target_include_directories(sdflow_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
  separate_arguments(_sdflow_torch_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
  target_compile_options(sdflow_torch INTERFACE ${_sdflow_torch_flags})
  if(SDFLOW_CUDA)
    target_compile_definitions(sdflow_torch INTERFACE SDFLOW_WITH_CUDA=1)
  endif()
endif()
