# Compiler flags shared by every module.
set(ISORUN_WARNINGS -Wall -Wextra -Wshadow -Wformat=2 -Wmissing-prototypes
	-Wstrict-prototypes -Wvla -Wno-unused-parameter)
if(ISORUN_WERROR)
	list(APPEND ISORUN_WARNINGS -Werror)
endif()
add_compile_options(${ISORUN_WARNINGS})
add_compile_definitions(_GNU_SOURCE _FILE_OFFSET_BITS=64)

if(ISORUN_SANITIZE)
	add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
		-fno-sanitize-recover=undefined)
	add_link_options(-fsanitize=address,undefined)
endif()

if(ISORUN_FUZZ)
	add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer)
	add_link_options(-fsanitize=address,undefined)
endif()

if(CMAKE_BUILD_TYPE STREQUAL "Release" AND ISORUN_HARDEN)
	add_compile_definitions(_FORTIFY_SOURCE=2)
	add_compile_options(-fstack-protector-strong -fPIE)
	add_link_options(-pie -Wl,-z,relro,-z,now)
endif()

# isorun_module(NAME SOURCES... [DEPS ...]) : one static library per module, with its
# public header folder <module>/include.
function(isorun_module name)
	cmake_parse_arguments(M "" "" "SOURCES;DEPS" ${ARGN})
	add_library(${name} STATIC ${M_SOURCES})
	target_include_directories(${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include
		PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
	target_link_libraries(${name} PUBLIC ${M_DEPS})
endfunction()
