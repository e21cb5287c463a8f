" Vim indent file for routelang (*.route): indent inside { }, [ ] and ( ).
if exists('b:did_indent')
  finish
endif
let b:did_indent = 1

setlocal autoindent
setlocal indentexpr=GetRouteIndent(v:lnum)
setlocal indentkeys=0{,0},0),0],!^F,o,O,e

let b:undo_indent = 'setlocal autoindent< indentexpr< indentkeys<'

if exists('*GetRouteIndent')
  finish
endif

" The line without strings and comments, so brackets inside them do not count.
function! s:Code(lnum) abort
  let line = getline(a:lnum)
  let line = substitute(line, 'r"[^"]*"', '""', 'g')
  let line = substitute(line, '"\%([^"\\]\|\\.\)*"', '""', 'g')
  return substitute(line, '#.*$', '', '')
endfunction

function! s:Count(text, pattern) abort
  return len(split(a:text, a:pattern, 1)) - 1
endfunction

function! GetRouteIndent(lnum) abort
  let prev = prevnonblank(a:lnum - 1)
  if prev == 0
    return 0
  endif
  let ind = indent(prev)
  let code = s:Code(prev)
  " Open brackets on the previous line indent; a line starting with a closer
  " was already dedented, so do not count that closer again.
  let opens = s:Count(code, '[{[(]')
  let closes = s:Count(substitute(code, '^\s*[}\])]\+', '', ''), '[}\])]')
  let ind += shiftwidth() * (opens - closes)
  " A line that starts with closers dedents itself.
  let here = matchstr(getline(a:lnum), '^\s*\zs[}\])]\+')
  if !empty(here)
    let ind -= shiftwidth() * strlen(here)
  endif
  return max([ind, 0])
endfunction
