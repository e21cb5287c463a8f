" Headless Vim: for every character of the current file, the syntax group
" (as defined, and as translated through `hi link`), written as JSON to $OUT.
set encoding=utf-8
filetype plugin indent on
syntax on
edit
let s:out = []
for s:lnum in range(1, line('$'))
  let s:row = []
  let s:col = 1
  for s:char in split(getline(s:lnum), '\zs')
    let s:id = synID(s:lnum, s:col, 1)
    call add(s:row, [synIDattr(s:id, 'name'), synIDattr(synIDtrans(s:id), 'name')])
    let s:col += strlen(s:char)
  endfor
  call add(s:out, s:row)
endfor
call writefile([json_encode({'filetype': &filetype, 'syntax': get(b:, 'current_syntax', ''),
      \ 'commentstring': &commentstring, 'indentexpr': &indentexpr, 'lines': s:out})], $OUT)
qa!
