// Lets a library with no sources yet be a valid CMake target.
