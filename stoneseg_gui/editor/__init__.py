"""The mask editor: the canvas and its painting tools, the editing session, the photo list."""
